"""Where each trained message sits in the rendered conversation, as character ranges of the template's text T.

Prefix rule (the default): an assistant message k starts where `render(messages[:k], add_generation_prompt=True)`
ends, provided that text is a prefix of T, and ends after the first end-of-turn marker that follows (the marker is
trained: the model must learn to stop). Another trained message k (with `train.roles` naming more roles) spans
`render(messages[:k])` to `render(messages[:k+1])`, both prefixes of T; when it follows an assistant turn that the
template renders differently at the end of a conversation, it starts after that turn's end-of-turn marker.

Some templates render a message differently once later messages follow it (Qwen3 shows an assistant's reasoning only
after the last user query, and adds an empty think block to the last turn only), so a prefix render may not be a prefix
of T. Then the occurrence rule applies to assistant messages: the template's generation prompt (`<|im_start|>assistant\n`
for Qwen) must occur in T exactly once per assistant message, and assistant message j starts after its j-th
occurrence. Templates with no generation prompt that also move text between turns (Mistral puts the tools before the
last user message, so every earlier prefix differs) get the anchor rule: assistant message k starts at the one place in
T, after the previous trained turn, where T shares the longest tail with `render(messages[:k], add_generation_prompt=True)`,
that tail holding all of message k-1's text. A conversation no rule fits raises SpanError (the record is dropped and
counted, never mislabelled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dsc.compiler.chat.chat_template import ChatTemplate
from dsc.compiler.chat.layouts import Conversation

PREFIX = "prefix"
OCCURRENCE = "occurrence"
ANCHOR = "anchor"


class SpanError(Exception):
    """A conversation whose trained spans cannot be placed exactly; `detail` is JSON text for the audit."""

    def __init__(self, reason: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = json.dumps(detail, ensure_ascii=False)


@dataclass
class Spans:
    """The rendered text T, the trained character ranges in it (in order) and the rule that placed them."""

    text: str
    spans: list[tuple[int, int]]
    rule: str
    first_mismatch: int | None = None


def _generation_prompt(tmpl: ChatTemplate, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str | None:
    plain = tmpl.render(messages, tools)
    prompted = tmpl.render(messages, tools, add_generation_prompt=True)
    return prompted[len(plain) :] if prompted.startswith(plain) and len(prompted) > len(plain) else None


def _occurrences(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at >= 0:
        found.append(at + len(needle))
        at = text.find(needle, at + len(needle))
    return found


def _end(text: str, start: int, marker: str, k: int) -> int:
    at = text.find(marker, start)
    if at < 0:
        raise SpanError(
            "no end-of-turn marker", f"message {k}: no end-of-turn marker {marker!r} after it", {"message": k, "marker": marker}
        )
    return at + len(marker)


def find_spans(tmpl: ChatTemplate, conv: Conversation) -> Spans:
    """The trained spans of a conversation (template errors propagate to the caller, which locates them)."""
    messages, tools = conv.messages, conv.tools
    text = tmpl.render(messages, tools)
    spans: list[tuple[int, int]] = []
    for k, trained in enumerate(conv.train):
        if not trained:
            continue
        if messages[k]["role"] == "assistant":
            head = tmpl.render(messages[:k], tools, add_generation_prompt=True) if k else ""
            if not text.startswith(head):
                return _by_occurrence(tmpl, conv, text, k)
            spans.append((len(head), _end(text, len(head), tmpl.end_of_turn, k)))
            continue
        spans.append(_other_span(tmpl, conv, text, k))
    return _checked(Spans(text=text, spans=spans, rule=PREFIX))


def _other_span(tmpl: ChatTemplate, conv: Conversation, text: str, k: int) -> tuple[int, int]:
    """A trained message that is not an assistant's: from where `messages[:k]` ends to where `messages[:k+1]` ends.
    When the conversation before it ends with an assistant turn that the template renders differently at the end
    (Qwen3's empty think block), it starts after that turn's end-of-turn marker instead."""
    messages, tools = conv.messages, conv.tools
    upto = tmpl.render(messages[: k + 1], tools)
    before = tmpl.render(messages[:k], tools) if k else ""
    if text.startswith(upto) and text.startswith(before):
        return len(before), len(upto)
    if text.startswith(upto) and k and messages[k - 1]["role"] == "assistant":
        head = tmpl.render(messages[: k - 1], tools, add_generation_prompt=True) if k > 1 else ""
        if text.startswith(head):
            return _end(text, len(head), tmpl.end_of_turn, k - 1), len(upto)
    raise SpanError(
        "template renders turns differently in context",
        f"message {k} ({messages[k]['role']}) renders differently once later messages follow",
        {"message": k, "rule": PREFIX},
    )


def _checked(found: Spans) -> Spans:
    """Spans must come in order without overlapping: an assistant turn whose marker is missing would otherwise reach
    into the next turn."""
    for (_, end), (start, _) in zip(found.spans, found.spans[1:], strict=False):
        if start < end:
            raise SpanError(
                "overlapping turns", "a trained turn overlaps the next one (end-of-turn marker missing?)", {"spans": found.spans}
            )
    return found


def _by_occurrence(tmpl: ChatTemplate, conv: Conversation, text: str, first: int) -> Spans:
    messages = conv.messages
    detail = {"message": first, "rule": OCCURRENCE}
    if any(t and m["role"] != "assistant" for m, t in zip(messages, conv.train, strict=True)):
        raise SpanError("template renders turns differently in context", f"message {first} renders differently in context", detail)
    prompt = _generation_prompt(tmpl, messages[:first], conv.tools)
    assistants = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    starts = _occurrences(text, prompt) if prompt else []
    if len(starts) != len(assistants):
        return _by_anchor(tmpl, conv, text, first, {**detail, "generation_prompt": prompt, "occurrences": len(starts)})
    start_of = dict(zip(assistants, starts, strict=True))
    spans = [(start_of[k], _end(text, start_of[k], tmpl.end_of_turn, k)) for k, t in enumerate(conv.train) if t]
    return _checked(Spans(text=text, spans=spans, rule=OCCURRENCE, first_mismatch=first))


def _shared_tail(a: str, b: str, b_end: int) -> int:
    """How many characters `a` ends with that `b[:b_end]` ends with too."""
    n, top = 0, min(len(a), b_end)
    while n < top and a[-1 - n] == b[b_end - 1 - n]:
        n += 1
    return n


def _anchor(text: str, head: str, previous: str, after: int) -> int | None:
    """The one end position in `text`, at or after `after`, where `text` shares the longest tail with `head`; None when
    that tail does not hold all of `previous` (the text of the message before) or two places tie."""
    best, found = 0, []
    for end in range(max(after, 1), len(text) + 1):
        if text[end - 1] != head[-1]:
            continue
        n = _shared_tail(head, text, end)
        if n > best:
            best, found = n, [end]
        elif n == best:
            found.append(end)
    if len(found) != 1 or previous not in head[len(head) - best :]:
        return None
    return found[0]


def _by_anchor(tmpl: ChatTemplate, conv: Conversation, text: str, first: int, detail: dict[str, Any]) -> Spans:
    messages, tools = conv.messages, conv.tools
    spans: list[tuple[int, int]] = []
    after = 0
    for k, trained in enumerate(conv.train):
        if not trained:
            continue
        head = tmpl.render(messages[:k], tools, add_generation_prompt=True) if k else ""
        previous = messages[k - 1].get("content") if k else ""
        start = _anchor(text, head, previous if isinstance(previous, str) else "", after) if head else 0
        if start is None:
            raise SpanError(
                "template renders turns differently in context",
                f"message {first} renders differently in context, and message {k}'s start cannot be anchored in the text",
                {**detail, "rule": ANCHOR, "anchored": k},
            )
        after = _end(text, start, tmpl.end_of_turn, k)
        spans.append((start, after))
    return _checked(Spans(text=text, spans=spans, rule=ANCHOR, first_mismatch=first))
