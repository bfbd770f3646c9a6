"""The tokenize pass for conversations: T -> `input_ids` (one encode of the whole text, as `apply_chat_template(...,
tokenize=True)` does) and `labels` (ids inside trained spans, -100 elsewhere), found with the fast tokenizer's offsets.

Label rule: a token is trained iff its first character lies in a trained span. A token that straddles a span edge
(byte-level BPE merging the text before an assistant turn with its first characters, or its marker with what follows)
cannot be both; such records are counted as boundary drift, with the straddling tokens in `_detail`. With Qwen-style
templates, where every turn starts and ends with a special token, none straddles.

Over `lengths.max_length`, `overflow: truncate` drops the oldest turns (a turn starts at a user message; leading system
messages and the tools stay) and renders again until the rest fits; the last turn is never cut, so a conversation
whose last turn alone is too long is dropped, as is one whose trained turns were all cut away.
"""

from __future__ import annotations

import json
from typing import Any

from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, location, size
from dsc.compiler.chat.chat_template import ChatTemplate
from dsc.compiler.chat.layouts import Conversation
from dsc.compiler.chat.render_chat import CHAT, RENDER_ERRORS
from dsc.compiler.chat.spans import PREFIX, SpanError, Spans, find_spans
from dsc.compiler.encode import IGNORE, int32_lists
from dsc.compiler.spec import Lengths
from dsc.compiler.tokenizer import LoadedTokenizer
from tokenizers import Encoding

DRIFT_SHOWN = 5


def _token_at(encoding: Encoding, start: int, stop: int, step: int) -> int | None:
    """The token holding the first character from `start` towards `stop` that a token covers (a tokenizer may leave
    some characters, such as stripped spaces, to no token)."""
    for pos in range(start, stop, step):
        t = encoding.char_to_token(pos)
        if t is not None:
            return t
    return None


def label(encoding: Encoding, spans: list[tuple[int, int]]) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """(ids, labels, straddling tokens) of one encoded text and its trained character spans: a token is trained iff
    its first character lies in a span. Found with the encoding's own char -> token map (two look-ups per span
    edge), not by walking every token's offsets."""
    ids = encoding.ids
    labels = [IGNORE] * len(ids)
    straddling = []
    for s, e in spans:
        first, last = _token_at(encoding, s, e, 1), _token_at(encoding, e - 1, s - 1, -1)
        if first is None or last is None:
            continue
        a, _ = encoding.token_to_chars(first)
        _, b = encoding.token_to_chars(last)
        if a < s:  # starts before the span: its first character is outside
            straddling.append({"token": first, "chars": list(encoding.token_to_chars(first)), "span": [s, e]})
            first += 1
        if b > e:
            straddling.append({"token": last, "chars": list(encoding.token_to_chars(last)), "span": [s, e]})
        labels[first : last + 1] = ids[first : last + 1]
    return ids, labels, straddling


def _turn_starts(conv: Conversation) -> list[int]:
    """Where the turns after the first begin: the indices of user messages but the first."""
    users = [k for k, m in enumerate(conv.messages) if m["role"] == "user"]
    return users[1:]


def _without_turns(conv: Conversation, start: int) -> Conversation:
    head = next((k for k, m in enumerate(conv.messages) if m["role"] != "system"), 0)
    return Conversation(
        messages=conv.messages[:head] + conv.messages[start:], tools=conv.tools, train=conv.train[:head] + conv.train[start:]
    )


def make_chat_encode_pass(tok: LoadedTokenizer, tmpl: ChatTemplate, lengths: Lengths) -> Pass:
    """Build the pass that adds `input_ids`, `labels`, `_truncated`, `_drift` and `_span_fallback`."""
    backend = tok.backend
    limit = lengths.max_length
    policy = lengths.target_overflow

    def shorten(conv: Conversation) -> tuple[Encoding, Spans] | str:
        """The latest turns that fit, encoded; or why none do."""
        for start in _turn_starts(conv):
            cut = _without_turns(conv, start)
            if not any(cut.train):
                return "too long: max_length (trained turns cut)"
            found = find_spans(tmpl, cut)
            encoding = backend.encode(found.text, add_special_tokens=False)
            if len(encoding.ids) <= limit:
                return encoding, found
        return "too long: max_length"

    def encode(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail: list[str | None] = list(batch.get(DETAIL) or [None] * n)
        prompts, responses = list(batch["prompt"]), list(batch["response"])
        live = [i for i in range(n) if drop[i] is None]
        payloads = [json.loads(batch[CHAT][i]) for i in live]
        encodings = backend.encode_batch([prompts[i] + responses[i] for i in live], add_special_tokens=False)
        input_ids: list[list[int]] = [[] for _ in range(n)]
        labels: list[list[int]] = [[] for _ in range(n)]
        truncated: list[bool | None] = [None] * n
        drift: list[bool | None] = [None] * n
        fallback: list[bool | None] = [None] * n
        for i, payload, encoding in zip(live, payloads, encodings, strict=True):
            spans = [tuple(s) for s in payload["spans"]]
            rule = payload["rule"]
            truncated[i] = limit is not None and len(encoding.ids) > limit
            if truncated[i]:
                full = len(encoding.ids)
                shortened: tuple[Encoding, Spans] | str = "too long: max_length"
                if policy == "truncate":
                    conv = Conversation(messages=payload["messages"], tools=payload["tools"], train=payload["train"])
                    try:
                        shortened = shorten(conv)
                    except (SpanError, *RENDER_ERRORS) as exc:
                        shortened = f"chat: {getattr(exc, 'reason', 'render failed after truncation')}"
                if isinstance(shortened, str):
                    drop[i] = shortened
                    if policy == "error":
                        error[i] = f"{location(batch, i)}: {full} tokens, longer than lengths.max_length ({limit}) and overflow is 'error'"
                    detail[i] = json.dumps({"tokens": full, "max_length": limit})
                    continue
                encoding, found = shortened
                spans, rule = found.spans, found.rule
                cut = spans[-1][0]
                prompts[i], responses[i] = found.text[:cut], found.text[cut:]
                detail[i] = json.dumps({"tokens_before": full, "tokens_after": len(encoding.ids)})
            input_ids[i], labels[i], straddling = label(encoding, spans)
            drift[i] = bool(straddling)
            fallback[i] = rule != PREFIX
            if straddling:
                detail[i] = json.dumps({"straddling": straddling[:DRIFT_SHOWN], "count": len(straddling)})
        return {
            "input_ids": int32_lists(input_ids, drop),
            "labels": int32_lists(labels, drop),
            "prompt": prompts,
            "response": responses,
            "_truncated": truncated,
            "_drift": drift,
            "_span_fallback": fallback,
            DROP: drop,
            ERROR: error,
            DETAIL: detail,
        }

    return encode
