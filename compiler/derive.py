"""The derive pass: fields computed from other fields, by regex or by a Jinja expression.

Gorilla's instruction sits inside its `code` string; a regex pulls it out. A regex that does not match (and has no
default) makes the record invalid, reported at its line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, field_column, location, size
from dsc.compiler.sandbox import expression
from dsc.compiler.spec import Spec
from jinja2 import TemplateError


def context_value(value: Any, as_json: bool) -> Any:
    """A stored field value as templates see it (JSON-stored fields decoded)."""
    return json.loads(value) if as_json and value is not None else value


SHOWN_TEXT = (120, 80)
"""How much of a text a regex failed on the audit keeps: its head and its tail (where anchored patterns fail)."""


def shorten(text: str) -> str:
    """The text a derived field failed on, cut to its head and tail for the audit."""
    head, tail = SHOWN_TEXT
    return text if len(text) <= head + tail + 3 else f"{text[:head]} … {text[-tail:]}"


def make_derive_pass(spec: Spec) -> Pass:
    """Build the pass that adds one column per derived field, in spec order (later ones may use earlier ones)."""
    json_fields = {f.name for f in spec.fields if f.stored_as_json}
    steps = []
    for d in spec.derived:
        if d.regex is not None:
            steps.append((d, re.compile(d.regex, re.DOTALL), None))
        else:
            steps.append((d, None, d.expression))

    def derive(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail = list(batch.get(DETAIL) or [None] * n)
        out: Batch = {field_column(d.name): [None] * n for d, _, _ in steps}
        present = [k for k in spec.variables if field_column(k) in batch]
        for d, pattern, expr in steps:
            column = out[field_column(d.name)]
            for i in range(n):
                if drop[i] is not None:
                    continue
                if pattern is not None:
                    source = field_column(d.source)
                    text = batch[source][i] if source in batch else out[source][i]
                    match = pattern.search(text) if isinstance(text, str) else None
                    if match is None:
                        if d.default is not None:
                            column[i] = d.default
                            continue
                        drop[i] = f"invalid: derived '{d.name}' did not match"
                        error[i] = f"{location(batch, i, d.source)}: derived field '{d.name}': regex did not match"
                        shown = shorten(text) if isinstance(text, str) else text
                        detail[i] = json.dumps({"field": d.source, "regex": d.regex, "text": shown}, ensure_ascii=False)
                        continue
                    column[i] = match.group(d.group)
                else:
                    ctx = {k: context_value(batch[field_column(k)][i], k in json_fields) for k in present}
                    ctx.update({e.name: out[field_column(e.name)][i] for e, _, _ in steps if out[field_column(e.name)][i] is not None})
                    try:
                        value = expression(expr)(**ctx)
                    except (TemplateError, TypeError, ValueError, KeyError) as exc:
                        if d.default is not None:
                            column[i] = d.default
                            continue
                        drop[i] = f"invalid: derived '{d.name}' failed"
                        error[i] = f"{location(batch, i)}: derived field '{d.name}': {exc}"
                        detail[i] = json.dumps({"field": d.name, "expression": expr, "message": str(exc)}, ensure_ascii=False)
                        continue
                    column[i] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        out[DROP] = drop
        out[ERROR] = error
        out[DETAIL] = detail
        return out

    return derive
