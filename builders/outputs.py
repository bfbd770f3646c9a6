"""Where dsc may write: a build or an export replaces its target folder whole, so the target must be provably its own.

A folder is replaced only when it is empty or dsc wrote it: a package has `manifest.json` whose "format" is
"dsc-package/<n>" (every package has carried it since dsc's first release), an export has `dsc-export.json` whose
"format" is "dsc-export/<n>". A file, any other non-empty folder, and a folder that holds what the build reads (the
spec, its sources and templates; the package an export reads) are refused before any work is done, with one line
naming the path. Nothing is ever renamed aside and kept: see `dsc.builders.package.staging`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dsc.compiler.errors import DscError, Location, Problem
from dsc.compiler.spec import Spec


class OutputError(DscError):
    """The output folder cannot be written without destroying something dsc did not make: exit 2, nothing written."""

    exit_code = 2


@dataclass(frozen=True)
class Kind:
    """What a target folder holds when dsc wrote it: the marker file and the prefix of its "format" value."""

    what: str
    marker: str
    format: str

    def owns(self, folder: Path) -> bool:
        """True when `folder` carries this kind's marker (so dsc wrote it and may replace it)."""
        try:
            data = json.loads((folder / self.marker).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and str(data.get("format", "")).startswith(self.format)


PACKAGE = Kind("package", "manifest.json", "dsc-package/")
EXPORT = Kind("export", "dsc-export.json", "dsc-export/")


def _refuse(target: Path, message: str) -> OutputError:
    return OutputError(Problem(message, Location(str(target))))


def check_replaceable(target: Path, kind: Kind) -> None:
    """Refuse a target that exists and is not an empty folder or a folder of `kind` that dsc wrote."""
    if not (target.exists() or target.is_symlink()):
        return
    if not target.is_dir():
        raise _refuse(target, f"is a file, and a dsc {kind.what} is a folder; refusing to replace the file (choose another output)")
    if any(target.iterdir()) and not kind.owns(target):
        raise _refuse(
            target,
            f"is not empty and is not a dsc {kind.what} (no {kind.marker} with \"format\": \"{kind.format}...\"); "
            "refusing to replace it: choose a new or empty folder",
        )


def check_output(target: str | Path, kind: Kind, inputs: Iterable[tuple[str, Path]], *, may_nest: bool) -> Path:
    """The resolved target, after refusing one that would replace or hold its own inputs or any foreign folder.

    `inputs` are (role, path) pairs. The target may not be an input's folder or any folder above it; with
    `may_nest=False` it may not lie inside an input folder either (an export inside its package would change what a
    publish uploads)."""
    final = Path(target).expanduser().resolve()
    for role, path in inputs:
        path = path.resolve()
        folder = path if path.is_dir() else path.parent
        if final == folder or final in folder.parents:
            raise _refuse(final, f"holds the {role} {path}; a {kind.what} folder is replaced whole, so it cannot go here")
        if not may_nest and folder in final.parents:
            raise _refuse(final, f"is inside the {role} {path}; choose a folder outside it")
    check_replaceable(final, kind)
    return final


def spec_inputs(spec: Spec) -> list[tuple[str, Path]]:
    """What a build reads from disk: the spec, its source files and its template files."""
    out = [("spec", spec.path)]
    out += [("source", path) for src in spec.sources for path in src.files]
    out += [("template", t.file) for t in spec.templates if t.file is not None]
    return out


def check_package_output(spec: Spec, target: str | Path | None = None) -> Path:
    """Where a build of `spec` writes (its output unless `target`), refused before any work if that would be unsafe."""
    return check_output(spec.output if target is None else target, PACKAGE, spec_inputs(spec), may_nest=True)
