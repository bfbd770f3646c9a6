"""The Jinja environments every template and expression runs in: sandboxed; the spec's own templates strict about
undefined names, a model's chat template set up exactly as transformers sets it up."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
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


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _chat_to_json(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: tuple[str, str] | None = None, sort_keys: bool = False
) -> str:
    # transformers' `tojson` for chat templates: json.dumps with non-ASCII kept (a tool's Chinese description stays as is).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Generation(Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask tag) renders its body unchanged: dsc finds
    assistant spans itself, so templates that mark them still parse and render the same text."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body).set_lineno(lineno)


@lru_cache(maxsize=1)
def chat_environment() -> ImmutableSandboxedEnvironment:
    """The environment for a model's chat template, set up as transformers' `apply_chat_template` sets up its own
    (trim_blocks, lstrip_blocks, loop controls, its `tojson`, `raise_exception`, `strftime_now`, `dict`), so that
    dsc renders the same text; sandboxed like every other template, undefined names lenient as there."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _Generation])
    env.filters["tojson"] = _chat_to_json
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = dict
    return env


@lru_cache(maxsize=16)
def chat_template(text: str) -> Template:
    """A compiled chat template, cached per process like `template`."""
    return chat_environment().from_string(text)
