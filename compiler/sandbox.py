"""The one Jinja environment every template and expression runs in: sandboxed, strict about undefined names, bounded.

Jinja's own sandbox stops attribute tricks and mutation but not work: `{{ 'a' * 10**10 }}`, `{{ 2**(2**40) }}` (which
Jinja would even fold at compile time) or nested `range()` loops. Here every `*`, `**`, `+` and `%` goes through
`call_binop`, which refuses results over the bounds in `dsc.compiler.limits`; intercepted operators are never folded
at compile time (Jinja's `BinExpr.as_const` gives up on them in a sandbox). Filters and string methods that take a
width or count, or that multiply text (`replace`, `join`, `format`, `%`), refuse before they run what would be too
long (filters are folded with constant arguments, so this covers compile time too). `lipsum` is gone, `range` is
capped, `namespace` attributes and macro output are bounded, and the environment has no loader: `{% include %}` and
`{% import %}` cannot read files. A model's chat template runs in the same bounded sandbox, set up as transformers sets
up its own so that the text is the same.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache, wraps
from typing import Any

from dsc.compiler.limits import INT_BITS, RANGE_ITEMS, TEXT_CHARS, LimitError, charge, check_deadline
from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg

_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d{7,})[^{}]*\}")
_WIDTH_FILTERS = ("center", "indent", "wordwrap", "truncate", "batch", "slice", "format", "tojson", "replace", "join")


def _too_big(what: str) -> LimitError:
    return LimitError("template size", f"{what} is over the template limits ({TEXT_CHARS:,} characters, {INT_BITS:,}-bit integers)")


def _size(value: Any) -> None:
    """Refuse a value a template built that is over the bounds; charge text to the record's budget."""
    if isinstance(value, int):
        if value.bit_length() > INT_BITS:
            raise _too_big("an integer")
    elif isinstance(value, str | list | tuple | bytes):
        if len(value) > TEXT_CHARS:
            raise _too_big(f"a {type(value).__name__} of {len(value):,} items")
        charge(len(value))


def _check_ints(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > TEXT_CHARS:
            raise _too_big(f"a width or count of {arg}")


def _check_expansion(text: str, places: int, values: Iterable[Any]) -> None:
    """Refuse text that putting `values` into `places` spots of `text` would make too long (`'{0}' * 100000` formatted
    with a long field, `'%(a)s' * 100000 % {'a': ...}`, a replace or a join that multiplies its input)."""
    longest = max((len(v) for v in values if isinstance(v, str)), default=0)
    if len(text) + places * longest > TEXT_CHARS:
        raise _too_big(f"the text this builds ({places:,} places for values of up to {longest:,} characters)")


def _check_percent(fmt: str, args: Any) -> None:
    for star_or_width in _PERCENT_WIDTH.findall(fmt):
        for part in star_or_width:
            if part.isdigit() and int(part) > TEXT_CHARS:
                raise _too_big(f"a format width of {part}")
    values = tuple(args.values()) if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
    _check_ints(values)
    _check_expansion(fmt, fmt.count("%"), values)


def _check_replace(text: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        _check_expansion(text, text.count(old) if old else len(text) + 1, [new])


def _check_join(separator: Any, items: list[Any]) -> None:
    if isinstance(separator, str):
        _check_expansion("", len(items), [separator])
    if sum(len(item) for item in items if isinstance(item, str)) > TEXT_CHARS:
        raise _too_big(f"a join of {len(items):,} items")


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse `**`, `*` and `%` whose result would be too large, before computing it."""
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**" and ints and right > 0 and abs(left) > 1 and abs(left).bit_length() * right > INT_BITS:
        raise _too_big(f"{left} ** {right}")
    if op == "*":
        if ints and left.bit_length() + right.bit_length() > INT_BITS:
            raise _too_big("a product")
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > TEXT_CHARS:
                raise _too_big(f"a {type(seq).__name__} repeated {n} times")
    if op == "%" and isinstance(left, str):
        _check_percent(left, right)


def _range(*args: int) -> range:
    items = range(*args)
    if len(items) > RANGE_ITEMS:
        raise LimitError("template size", f"range() of {len(items):,} items (the limit is {RANGE_ITEMS:,})")
    return items


class _BoundedNamespace(Namespace):
    """`namespace()` whose attributes cannot grow past the bounds (`{% set ns.x = ns.x ~ ns.x %}` in a loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _size(value)
        super().__setitem__(name, value)


def _bounded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that refuses huge widths and counts, and replaces or joins that would build too much text."""
    skip = 1 if _PassArg.from_obj(fn) is not None else 0  # the context, environment or eval context Jinja passes first

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        head, value, rest = args[:skip], args[skip] if len(args) > skip else None, list(args[skip + 1 :])
        _check_ints(rest + list(kwargs.values()))
        if fn.__name__ == "do_format" and isinstance(value, str):
            _check_percent(value, tuple(rest))
        elif fn.__name__ == "do_replace" and isinstance(value, str) and len(rest) >= 2:
            _check_replace(value, rest[0], rest[1])
        elif fn.__name__ == "do_join" and value is not None:
            value = list(value)
            _check_join(rest[0] if rest else kwargs.get("d", ""), value)
            args = (*head, value, *rest)
        return fn(*args, **kwargs)

    return run


def _to_json(value: Any, indent: int | None = None, ensure_ascii: bool = True, sort_keys: bool = False) -> str:
    # Jinja's own `tojson` sorts keys and HTML-escapes; prompts need plain json.dumps (Gorilla's retriever uses it).
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _concat(parts: Iterable[str]) -> str:
    """Join rendered pieces (a template's or a macro's output), refusing more than the bound before joining."""
    pieces = list(parts)
    total = sum(map(len, pieces))
    if total > TEXT_CHARS:
        raise LimitError("template output", f"a template rendered more than {TEXT_CHARS:,} characters")
    return "".join(pieces)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with dsc's bounds on size, integers, loops and time."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)  # type: ignore[assignment]

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        check_deadline()
        _check_binop(op, left, right)
        result = self.binop_table[op](left, right)
        _size(result)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        check_deadline()
        if isinstance(__obj, types.BuiltinMethodType):
            _check_ints(list(args) + list(kwargs.values()))
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str) and __obj.__name__ == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            elif isinstance(owner, str) and __obj.__name__ == "join" and args:
                args = (list(args[0]), *args[1:])
                _check_join(owner, args[0])
        result = super().call(__context, __obj, *args, **kwargs)
        _size(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` with its widths bounded: literal ones in the format string, and ones given as arguments."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        if _BRACE_WIDTH.search(fmt):
            raise _too_big("a format width")

        def run(*args: Any, **kwargs: Any) -> str:
            mappings = [a for a in args if isinstance(a, dict)]
            values = [*args, *kwargs.values(), *(v for m in mappings for v in m.values())]
            _check_ints(values)
            _check_expansion(fmt, fmt.count("{"), values)
            return wrapped(*args, **kwargs)

        return run


@lru_cache(maxsize=1)
def environment() -> BoundedSandbox:
    """Sandboxed (no attribute tricks, no mutation), bounded, StrictUndefined (a missing name is an error), no
    autoescape, and no loader (templates cannot read files)."""
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    _bound(env)
    env.filters["json"] = _bounded_filter(_to_json)
    return env


def _bound(env: BoundedSandbox) -> None:
    """The globals and filters every dsc environment bounds: no lipsum, a capped range, bounded namespaces and widths."""
    env.globals.pop("lipsum", None)
    env.globals["range"] = _range
    env.globals["namespace"] = _BoundedNamespace
    for name in _WIDTH_FILTERS:
        env.filters[name] = _bounded_filter(env.filters[name])


@lru_cache(maxsize=256)
def template(text: str) -> Template:
    """A compiled template, cached per process: passes keep only the text, so they pickle into worker processes."""
    return environment().from_string(text)


def render_text(text: str, ctx: dict[str, Any]) -> str:
    """Render a template, stopping as soon as its output passes the bound (not after building all of it)."""
    pieces: list[str] = []
    total = 0
    for piece in template(text).generate(ctx):
        total += len(piece)
        if total > TEXT_CHARS:
            raise LimitError("template output", f"the template rendered more than {TEXT_CHARS:,} characters")
        pieces.append(piece)
    return "".join(pieces)


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
def chat_environment() -> BoundedSandbox:
    """The environment for a model's chat template, set up as transformers' `apply_chat_template` sets up its own
    (trim_blocks, lstrip_blocks, loop controls, its `tojson`, `raise_exception`, `strftime_now`, `dict`), so that
    dsc renders the same text; sandboxed and bounded like every other template, undefined names lenient as there."""
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _Generation])
    _bound(env)
    env.filters["tojson"] = _bounded_filter(_chat_to_json)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = dict
    return env


@lru_cache(maxsize=16)
def chat_template(text: str) -> Template:
    """A compiled chat template, cached per process like `template`."""
    return chat_environment().from_string(text)
