"""The render pass: the spec's Jinja templates turn each record into prompt text and response text.

Multi-turn records render their history turn by turn (`templates.history`), then the final turn. The prompt column is
everything the model reads before the final response; `_segments` keeps the turns apart when every assistant turn is
trained (`labels.turns: all`).
"""

from __future__ import annotations

import json
from typing import Any

from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, field_column, location, size
from dsc.compiler.derive import context_value
from dsc.compiler.limits import LimitError, record_limits, record_seconds, timed_records
from dsc.compiler.sandbox import lone_variable, render_text
from dsc.compiler.spec import Spec

SEGMENTS = "_segments"


class _RenderError(Exception):
    def __init__(self, key: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.reason = reason or f"render: {key}"


def _render(text: str, key: str, ctx: dict[str, Any]) -> str:
    name = lone_variable(text)
    if name is not None and isinstance(ctx.get(name), str):
        return ctx[name]
    try:
        return render_text(text, ctx)
    except LimitError as exc:
        raise _RenderError(key, str(exc), f"limit: {exc.reason}") from None
    except RecursionError:
        raise _RenderError(key, "recursion too deep (a macro calling itself, or data nested too deeply)") from None
    # A template is untrusted code run on untrusted data: whatever it raises (ZeroDivisionError, IndexError,
    # MemoryError, OverflowError, Jinja's own errors) is this record's error, never the build's traceback.
    except Exception as exc:  # noqa: BLE001
        raise _RenderError(key, str(exc) or type(exc).__name__) from None


def make_render_pass(spec: Spec) -> Pass:
    """Build the pass that adds `prompt`, `response` (and `_segments` for multi-turn labels)."""
    json_fields = {f.name for f in spec.fields if f.stored_as_json}
    names = spec.variables
    system = spec.system.text if spec.system else None
    prompt, response = spec.prompt.text, spec.response.text
    history = spec.history
    h_prompt = history.prompt.text if history else None
    h_response = history.response.text if history else None
    keep_segments = spec.labels.turns == "all"
    seconds = record_seconds()

    def turns(ctx: dict[str, Any]) -> list[str]:
        pieces: list[str] = []
        head = _render(system, "templates.system", ctx) if system else ""
        past = ctx.get(history.field) or [] if history else []
        for i, turn in enumerate(past):
            if not (isinstance(turn, list | tuple) and len(turn) == 2):
                raise _RenderError("templates.history", f"history item {i} must be a [query, answer] pair")
            tctx = {**ctx, "query": turn[0], "answer": turn[1], "round": i}
            pieces.append(head + _render(h_prompt, "templates.history.prompt", tctx))
            pieces.append(_render(h_response, "templates.history.response", tctx))
            head = ""
        pieces.append(head + _render(prompt, "templates.prompt", {**ctx, "round": len(past)}))
        return pieces

    def render(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail = list(batch.get(DETAIL) or [None] * n)
        prompts: list[str | None] = [None] * n
        responses: list[str | None] = [None] * n
        segments: list[list[str] | None] = [None] * n
        columns = [(k, batch[field_column(k)], k in json_fields) for k in names if field_column(k) in batch]
        with timed_records():
            for i in range(n):
                if drop[i] is not None:
                    continue
                ctx = {k: context_value(col[i], as_json) for k, col, as_json in columns}
                try:
                    with record_limits(seconds):
                        pieces = turns(ctx)
                        responses[i] = _render(response, "templates.response", {**ctx, "round": len(pieces) // 2})
                except _RenderError as exc:
                    drop[i] = exc.reason
                    error[i] = f"{location(batch, i)}: {exc.key}: {exc}"
                    detail[i] = json.dumps({"template": exc.key, "message": str(exc)}, ensure_ascii=False)
                    continue
                except LimitError as exc:  # the timer fired between two templates
                    drop[i] = f"limit: {exc.reason}"
                    error[i] = f"{location(batch, i)}: templates: {exc}"
                    detail[i] = json.dumps({"limit": exc.reason, "message": str(exc)}, ensure_ascii=False)
                    continue
                prompts[i] = "".join(pieces)
                if keep_segments:
                    segments[i] = pieces
        out: Batch = {"prompt": prompts, "response": responses, DROP: drop, ERROR: error, DETAIL: detail}
        if keep_segments:
            out[SEGMENTS] = segments
        return out

    return render
