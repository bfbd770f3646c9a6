"""The render pass for conversations: record -> OpenAI messages -> the chat template's text T and its trained spans.

`prompt` is T up to the last trained span and `response` the rest (so prompt + response is exactly T, and a
prompt-completion trainer sees the final trained turn as the completion). `_chat` carries the messages, tools, train
flags and spans (JSON) to the tokenize pass, which turns spans into labels and cuts long conversations by whole turns.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, field_column, location, size
from dsc.compiler.chat.chat_spec import ChatSpec
from dsc.compiler.chat.chat_template import ChatTemplate
from dsc.compiler.chat.layouts import Conversation, LayoutError, to_conversation
from dsc.compiler.chat.spans import PREFIX, SpanError, Spans, find_spans
from jinja2 import TemplateError

CHAT = "_chat"
PARALLEL_MIN = 200
"""Records in a batch below which rendering stays in this process (a pool's hand-off would cost more)."""
POOL_MIN_CORES = 4
"""Cores below which rendering stays in this process: on 2 cores the pool measured 20-40% slower than rendering in place."""
RENDER_ERRORS = (TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError)
"""What a chat template raises on a record it cannot render (raise_exception, a string + None, a missing key)."""


def chat_payload(conv: Conversation, found: Spans) -> str:
    """What the tokenize pass needs of a rendered conversation, as JSON text."""
    return json.dumps(
        {"messages": conv.messages, "tools": conv.tools, "train": conv.train, "spans": found.spans, "rule": found.rule},
        ensure_ascii=False,
    )


@dataclass
class Outcome:
    """One conversation rendered (`prompt`, `response`, `payload`), or why not (`reason`, located by `where`)."""

    prompt: str | None = None
    response: str | None = None
    payload: str | None = None
    detail: str | None = None
    reason: str | None = None
    where: str | None = None
    message: str | None = None


def render_conversation(record: dict[str, Any], chat: ChatSpec, tmpl: ChatTemplate) -> Outcome:
    """Read, render and place the trained spans of one record's conversation."""
    try:
        conv = to_conversation(record, chat, tmpl.end_of_turn)
        if not any(conv.train):
            raise LayoutError(
                "nothing to train", chat.messages, f"no message trains (roles {', '.join(chat.train_roles)}, turns {chat.turns})"
            )
        found = find_spans(tmpl, conv)
    except LayoutError as exc:
        return Outcome(reason=f"invalid: conversation: {exc.reason}", where=exc.where, message=str(exc))
    except SpanError as exc:
        return Outcome(reason=f"chat: {exc.reason}", where=chat.messages, message=str(exc), detail=exc.detail)
    except RENDER_ERRORS as exc:
        return Outcome(reason="render: templates.chat", message=f"templates.chat: {type(exc).__name__}: {exc}")
    cut = found.spans[-1][0]
    detail = json.dumps({"span_rule": found.rule, "first_mismatch": found.first_mismatch}) if found.rule != PREFIX else None
    return Outcome(prompt=found.text[:cut], response=found.text[cut:], payload=chat_payload(conv, found), detail=detail)


def _render_chunk(job: tuple[ChatSpec, ChatTemplate, list[dict[str, Any]]]) -> list[Outcome]:
    chat, tmpl, records = job
    return [render_conversation(r, chat, tmpl) for r in records]


@lru_cache(maxsize=1)
def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


def render_all(records: list[dict[str, Any]], chat: ChatSpec, tmpl: ChatTemplate) -> list[Outcome]:
    """Every record's outcome, in order. Templates have no batch call and render in Python, one core each, so on a
    machine with several cores a large batch is rendered by a pool of forked processes, one per core (the encode after
    it uses every core as well); inside a `--num-proc` worker, or with few cores, it renders in place."""
    workers = os.cpu_count() or 1
    if workers < POOL_MIN_CORES or len(records) < PARALLEL_MIN or multiprocessing.parent_process() is not None or os.name != "posix":
        return _render_chunk((chat, tmpl, records))
    step = -(-len(records) // (workers * 4))
    jobs = [(chat, tmpl, records[i : i + step]) for i in range(0, len(records), step)]
    return [o for chunk in _pool(workers).map(_render_chunk, jobs) for o in chunk]


def make_chat_render_pass(chat: ChatSpec, tmpl: ChatTemplate, json_fields: set[str]) -> Pass:
    """Build the pass that adds `prompt`, `response` and `_chat` to every conversation record."""
    used = [n for n in (chat.messages, chat.tools, chat.system) if n]

    def render(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail: list[str | None] = list(batch.get(DETAIL) or [None] * n)
        prompts: list[str | None] = [None] * n
        responses: list[str | None] = [None] * n
        payloads: list[str | None] = [None] * n
        columns = [(k, batch[field_column(k)], k in json_fields) for k in used]
        live = [i for i in range(n) if drop[i] is None]
        records = [{k: json.loads(col[i]) if as_json and col[i] is not None else col[i] for k, col, as_json in columns} for i in live]
        for i, o in zip(live, render_all(records, chat, tmpl), strict=True):
            if o.reason is not None:
                drop[i], error[i] = o.reason, f"{location(batch, i, o.where)}: {o.message}"
            prompts[i], responses[i], payloads[i], detail[i] = o.prompt, o.response, o.payload, o.detail or detail[i]
        return {"prompt": prompts, "response": responses, CHAT: payloads, DROP: drop, ERROR: error, DETAIL: detail}

    return render
