"""The derive pass: fields computed from other fields, by regex or by a Jinja expression.

Gorilla's instruction sits inside its `code` string; a regex pulls it out. A regex that does not match (and has no
default) makes the record invalid, reported at its line. Regexes run on the `regex` engine with a time limit (a spec's
`(a+)+$` backtracks for minutes on 40 characters with Python's `re`), expressions in the bounded sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import regex
from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, field_column, location, size
from dsc.compiler.limits import LimitError, record_limits, record_seconds, time_limit_error, timed_records
from dsc.compiler.sandbox import expression
from dsc.compiler.spec import DerivedSpec, Spec, compile_regex

_NO_MATCH: Any = object()


def context_value(value: Any, as_json: bool) -> Any:
    """A stored field value as templates see it (JSON-stored fields decoded)."""
    return json.loads(value) if as_json and value is not None else value


def _search(pattern: regex.Pattern[str], text: str, seconds: float) -> regex.Match[str] | None:
    try:
        return pattern.search(text, timeout=seconds)
    except TimeoutError:
        raise time_limit_error(seconds, "the regex ran") from None


SHOWN_TEXT = (120, 80)
"""How much of a text a regex failed on the audit keeps: its head and its tail (where anchored patterns fail)."""


def shorten(text: str) -> str:
    """The text a derived field failed on, cut to its head and tail for the audit."""
    head, tail = SHOWN_TEXT
    return text if len(text) <= head + tail + 3 else f"{text[:head]} … {text[-tail:]}"


def _source_text(d: DerivedSpec, batch: Batch, out: Batch, i: int) -> Any:
    """The value a regex-derived field reads: a record field, or a derived field made earlier in the same pass."""
    source = field_column(d.source)
    return batch[source][i] if source in batch else out[source][i]


def make_derive_pass(spec: Spec) -> Pass:
    """Build the pass that adds one column per derived field, in spec order (later ones may use earlier ones)."""
    json_fields = {f.name for f in spec.fields if f.stored_as_json}
    steps = [(d, compile_regex(d.regex) if d.regex is not None else None) for d in spec.derived]
    seconds = record_seconds()

    def value(d: DerivedSpec, pattern: regex.Pattern[str] | None, batch: Batch, out: Batch, i: int, present: list[str]) -> Any:
        """The derived value of row i; _NO_MATCH when a regex did not match."""
        if pattern is not None:
            text = _source_text(d, batch, out, i)
            match = _search(pattern, text, seconds) if isinstance(text, str) else None
            return _NO_MATCH if match is None else match.group(d.group)
        ctx = {k: context_value(batch[field_column(k)][i], k in json_fields) for k in present}
        ctx.update({e.name: out[field_column(e.name)][i] for e, _ in steps if out[field_column(e.name)][i] is not None})
        result = expression(d.expression)(**ctx)
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)

    def step(d: DerivedSpec, pattern: regex.Pattern[str] | None, batch: Batch, out: Batch, drop: list[str | None],
             error: list[str | None], detail: list[str | None], present: list[str]) -> None:
        """One derived field over the batch's kept rows; a row that fails is marked, with its location."""
        column = out[field_column(d.name)]
        for i in range(size(batch)):
            if drop[i] is not None:
                continue
            try:
                with record_limits(seconds):
                    column[i] = value(d, pattern, batch, out, i, present)
            except LimitError as exc:
                drop[i] = f"limit: {exc.reason}"
                error[i] = f"{location(batch, i, d.source)}: derived field '{d.name}': {exc}"
                detail[i] = json.dumps({"field": d.name, "limit": exc.reason, "message": str(exc)}, ensure_ascii=False)
                continue
            # An expression is untrusted code run on untrusted data: whatever it raises is this record's error.
            except Exception as exc:  # noqa: BLE001
                column[i] = None
                message = "recursion too deep" if isinstance(exc, RecursionError) else str(exc) or type(exc).__name__
                failed = (f"invalid: derived '{d.name}' failed", f"{location(batch, i)}: derived field '{d.name}': {message}",
                          {"field": d.name, "expression": d.expression, "message": message})
            else:
                if column[i] is not _NO_MATCH:
                    continue
                column[i] = None
                text = _source_text(d, batch, out, i)
                failed = (f"invalid: derived '{d.name}' did not match",
                          f"{location(batch, i, d.source)}: derived field '{d.name}': regex did not match",
                          {"field": d.source, "regex": d.regex, "text": shorten(text) if isinstance(text, str) else text})
            if d.default is not None:
                column[i] = d.default
            else:
                drop[i], error[i] = failed[:2]
                detail[i] = json.dumps(failed[2], ensure_ascii=False)

    def derive(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail = list(batch.get(DETAIL) or [None] * n)
        out: Batch = {field_column(d.name): [None] * n for d, _ in steps}
        present = [k for k in spec.variables if field_column(k) in batch]
        with timed_records():
            for d, pattern in steps:
                step(d, pattern, batch, out, drop, error, detail, present)
        out[DROP] = drop
        out[ERROR] = error
        out[DETAIL] = detail
        return out

    return derive
