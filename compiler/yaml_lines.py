"""YAML loading that remembers the line of every key, so spec errors can point at `file:line`.

A spec is untrusted: aliases are expanded at every use, so the nodes built are counted (a 1 KB alias bomb would make
billions), and a key given twice is an error rather than the last one silently winning.
"""

from __future__ import annotations

from typing import Any

import yaml
from dsc.compiler.errors import Location, Problem, SpecError
from dsc.compiler.limits import YAML_DEPTH, YAML_NODES

KeyPath = tuple[str | int, ...]


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than YAML_DEPTH (flow `[[[`/`{{{` or block indentation) while
    scanning, before it gets slow or recursive."""

    def _deeper(self, level: int) -> None:
        if level >= YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {YAML_DEPTH} levels", self.get_mark())

    def fetch_flow_collection_start(self, token_class: type) -> None:
        self._deeper(self.flow_level)
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column: int) -> bool:
        self._deeper(len(self.indents))
        return super().add_indent(column)


class _Builder:
    """Builds Python data from a YAML node graph, recording lines and counting nodes."""

    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.lines: dict[KeyPath, int] = {}
        self.nodes = 0

    def _fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError(Problem(message, Location(self.filename, node.start_mark.line + 1)))

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.nodes += 1
        if self.nodes > YAML_NODES:
            top = f"{path[0]}: " if path else ""
            line = self.lines.get(path[:1], node.start_mark.line + 1)
            message = f"{top}the YAML expands to more than {YAML_NODES:,} nodes (aliases count at every use)"
            raise SpecError(Problem(message, Location(self.filename, line)))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail(key_node, "a mapping key must be a plain value, not a list or mapping")
                key = self.loader.construct_object(key_node, deep=True)
                if key in out:
                    where = ".".join(str(p) for p in (*path, key))
                    raise self._fail(key_node, f"{where}: duplicate key '{key}' (first given at line {self.lines[(*path, key)]})")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def load_yaml_with_lines(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text; return the data and a map from key path to 1-based line."""
    loader = _BoundedLoader(text)
    builder = _Builder(loader, filename)
    try:
        node = loader.get_single_node()
        data = builder.build(node, ()) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise SpecError(Problem(message, Location(filename, line))) from None
    except yaml.YAMLError as exc:
        raise SpecError(Problem(f"invalid YAML: {exc}", Location(filename))) from None
    except RecursionError:
        raise SpecError(Problem("invalid YAML: nested too deeply (or an alias that contains itself)", Location(filename))) from None
    finally:
        loader.dispose()
    return data, builder.lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of a key path, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
