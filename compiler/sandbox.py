"""The one Jinja environment every template and expression runs in: sandboxed, strict about undefined names."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _to_json(value: Any, indent: int | None = None, ensure_ascii: bool = True, sort_keys: bool = False) -> str:
    # Jinja's own `tojson` sorts keys and HTML-escapes; prompts need plain json.dumps (Gorilla's retriever uses it).
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """Sandboxed (no attribute tricks, no mutation), StrictUndefined (a missing name is an error), no autoescape."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["json"] = _to_json
    return env


@lru_cache(maxsize=256)
def template(text: str) -> Template:
    """A compiled template, cached per process: passes keep only the text, so they pickle into worker processes."""
    return environment().from_string(text)


@lru_cache(maxsize=256)
def lone_variable(text: str) -> str | None:
    """The name, when a template is nothing but `{{ name }}` (Alpaca's response, ADGEN's summary): such a template
    renders a string value as itself, so the render pass can skip building a Jinja context for it."""
    body = environment().parse(text).body
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1:
        node = body[0].nodes[0]
        if isinstance(node, nodes.Name):
            return node.name
    return None


@lru_cache(maxsize=256)
def expression(text: str) -> Callable[..., Any]:
    """A compiled Jinja expression, cached per process like `template`."""
    return environment().compile_expression(text, undefined_to_none=False)
