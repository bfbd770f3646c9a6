"""The render pass for conversations: record -> OpenAI messages -> the chat template's text T and its trained spans.

`prompt` is T up to the last trained span and `response` the rest (so prompt + response is exactly T, and a
prompt-completion trainer sees the final trained turn as the completion). `_chat` carries the messages, tools, train
flags and spans (JSON) to the tokenize pass, which turns spans into labels and cuts long conversations by whole turns.
"""

from __future__ import annotations

import json
from typing import Any

from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, field_column, location, size
from dsc.compiler.chat.chat_spec import ChatSpec
from dsc.compiler.chat.chat_template import ChatTemplate
from dsc.compiler.chat.layouts import Conversation, LayoutError, to_conversation
from dsc.compiler.chat.spans import OCCURRENCE, SpanError, Spans, find_spans
from jinja2 import TemplateError

CHAT = "_chat"
RENDER_ERRORS = (TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError)
"""What a chat template raises on a record it cannot render (raise_exception, a string + None, a missing key)."""


def chat_payload(conv: Conversation, found: Spans) -> str:
    """What the tokenize pass needs of a rendered conversation, as JSON text."""
    return json.dumps(
        {"messages": conv.messages, "tools": conv.tools, "train": conv.train, "spans": found.spans, "rule": found.rule},
        ensure_ascii=False,
    )


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
        for i in range(n):
            if drop[i] is not None:
                continue
            record: dict[str, Any] = {k: json.loads(col[i]) if as_json and col[i] is not None else col[i] for k, col, as_json in columns}
            try:
                conv = to_conversation(record, chat, tmpl.end_of_turn)
                if not any(conv.train):
                    raise LayoutError(
                        "nothing to train", chat.messages, f"no message trains (roles {', '.join(chat.train_roles)}, turns {chat.turns})"
                    )
                found = find_spans(tmpl, conv)
            except LayoutError as exc:
                drop[i], error[i] = f"invalid: conversation: {exc.reason}", f"{location(batch, i, exc.where)}: {exc}"
                continue
            except SpanError as exc:
                drop[i], error[i], detail[i] = f"chat: {exc.reason}", f"{location(batch, i, chat.messages)}: {exc}", exc.detail
                continue
            except RENDER_ERRORS as exc:
                drop[i], error[i] = "render: templates.chat", f"{location(batch, i)}: templates.chat: {type(exc).__name__}: {exc}"
                continue
            cut = found.spans[-1][0]
            prompts[i], responses[i], payloads[i] = found.text[:cut], found.text[cut:], chat_payload(conv, found)
            if found.rule == OCCURRENCE:
                detail[i] = json.dumps({"span_rule": OCCURRENCE, "first_mismatch": found.first_mismatch})
        return {"prompt": prompts, "response": responses, CHAT: payloads, DROP: drop, ERROR: error, DETAIL: detail}

    return render
