"""The tokenize pass: rendered text -> `input_ids` and `labels`, exactly masked, truncated by the spec's policy.

Boundary rule: the prompt and the response are encoded *separately* and concatenated (ChatGLM's scheme), never as one
text whose prefix length is then masked (Alpaca's scheme). Why: at inference the prompt is encoded on its own and the
model continues from its last token, so training must see exactly those prompt ids; and with byte-level BPE one encode
of prompt+response can merge the prompt's last characters with the response's first into a token that straddles the
boundary, which Alpaca's scheme then masks: the model never learns the first token of its answer. Separate encodes
make every response token (and the EOS) a trained label and every prompt token -100.

Records where one encode of the whole text would have given other ids ("boundary drift") are counted: a window of
text around the boundary is encoded joined and apart, which finds every drift whose merged piece fits in the window
at a fraction of the cost of encoding every record twice. Prompts of one format mostly end alike ("### Response:"),
so the encodes of prompt tails are remembered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa
from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, drops, location, size
from dsc.compiler.render import SEGMENTS
from dsc.compiler.spec import Lengths, Spec
from dsc.compiler.tokenizer import LoadedTokenizer

IGNORE = -100
PROMPT_WINDOW = 16
RESPONSE_WINDOW = 32
"""Characters before and after the boundary used to detect drift: longer than the part of any pre-token (a word, a
run of punctuation or whitespace) that byte-level BPE merges across a prompt/response boundary in practice."""
_TAILS_KEPT = 50_000


@dataclass
class Encoded:
    """One record's sequence, or why it has none."""

    ids: list[int]
    labels: list[int]
    truncated: bool = False
    problem: str | None = None  # "source", "target" or "total": which length failed; "short": the cut left too little
    policy: str | None = None  # the failing side's policy: drop or error
    prompt_tokens: int = 0  # the prompt's length after any cut (with the tokenizer's prefix); "short": what it would be
    response_tokens: int = 0  # the same for the response, EOS included


LIMITS = {"source": "max_source_length", "target": "max_target_length", "total": "max_length"}
TOO_SHORT = "too short after truncation"


def _cut(ids: list[int], labels: list[int], keep: int, side: str, protect: int) -> tuple[list[int], list[int]]:
    """Keep `keep` tokens, cutting from the right or the left (never the first `protect` special tokens)."""
    if side == "left":
        drop = len(ids) - keep
        return ids[:protect] + ids[protect + drop :], labels[:protect] + labels[protect + drop :]
    return ids[:keep], labels[:keep]


def fit(
    src_ids: list[int],
    src_labels: list[int],
    tgt_ids: list[int],
    tgt_labels: list[int],
    eos_id: int,
    lengths: Lengths,
    protect: int,
) -> Encoded:
    """Apply the length limits; the target always keeps its EOS (it is appended after any cut).

    A target cut below `min_target_tokens` makes the record "short": trained on a stub of its answer and the EOS, it
    would teach the model to stop right after an answer's first words."""
    truncated = False
    ls = lengths
    if ls.max_source_length is not None and len(src_ids) > ls.max_source_length:
        if ls.source_overflow != "truncate":
            return Encoded([], [], problem="source", policy=ls.source_overflow)
        src_ids, src_labels = _cut(src_ids, src_labels, ls.max_source_length, ls.prompt_truncation, protect)
        truncated = True
    target_cut = False
    if ls.max_target_length is not None and len(tgt_ids) + 1 > ls.max_target_length:
        if ls.target_overflow != "truncate":
            return Encoded([], [], problem="target", policy=ls.target_overflow)
        tgt_ids, tgt_labels = tgt_ids[: ls.max_target_length - 1], tgt_labels[: ls.max_target_length - 1]
        truncated = target_cut = True
    if ls.max_length is not None:
        excess = len(src_ids) + len(tgt_ids) + 1 - ls.max_length
        if excess > 0:
            if ls.target_overflow != "truncate":
                return Encoded([], [], problem="total", policy=ls.target_overflow)
            keep = max(min(len(tgt_ids), 1), len(tgt_ids) - excess)
            excess -= len(tgt_ids) - keep
            target_cut = target_cut or keep < len(tgt_ids)
            tgt_ids, tgt_labels = tgt_ids[:keep], tgt_labels[:keep]
            truncated = True
        if excess > 0:
            if ls.source_overflow != "truncate" or len(src_ids) - excess < protect:
                return Encoded([], [], problem="total", policy=ls.source_overflow)
            src_ids, src_labels = _cut(src_ids, src_labels, len(src_ids) - excess, ls.prompt_truncation, protect)
    if target_cut and len(tgt_ids) < ls.min_target_tokens:
        return Encoded([], [], problem="short", policy="drop", prompt_tokens=len(src_ids), response_tokens=len(tgt_ids) + 1)
    ids = src_ids + tgt_ids + [eos_id]
    labels = src_labels + tgt_labels + [eos_id]
    return Encoded(ids, labels, truncated=truncated, prompt_tokens=len(src_ids), response_tokens=len(tgt_ids) + 1)


def head_cut(response: str) -> int:
    """Where the response's head for the drift window ends: at the last space within RESPONSE_WINDOW that follows a
    non-space (0 if none). Byte-level BPE (GPT-2, Llama 3, Qwen) and SentencePiece both start a new piece at such a
    space, so the head's ids are a prefix of the response's ids and need no encode of their own."""
    j = response.rfind(" ", 1, RESPONSE_WINDOW + 1)
    while j > 0 and response[j - 1].isspace():
        j = response.rfind(" ", 1, j)
    return max(j, 0)


def int32_lists(rows: list[list[int]], drop: list[str | None]) -> pa.Array:
    """Token lists straight to an Arrow list<int32> array (null where dropped): one conversion for the whole batch
    instead of a Python-object walk per token."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(list(chain.from_iterable(rows)), type=pa.int32())
    mask = pa.array([d is not None for d in drop], type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def make_encode_pass(spec: Spec, tok: LoadedTokenizer) -> Pass:
    """Build the pass that adds `input_ids`, `labels` and the bookkeeping columns the manifest counts."""
    backend = tok.backend
    prefix = list(tok.prefix_ids)
    all_turns = spec.labels.turns == "all"
    train_prompt = spec.labels.train_on_prompt
    lengths = spec.lengths
    tail_ids: dict[str, list[int]] = {}

    def encode(batch: Batch) -> Batch:
        n = size(batch)
        drop = list(drops(batch))
        error = list(batch.get(ERROR) or [None] * n)
        detail: list[str | None] = [None] * n
        live = [i for i in range(n) if drop[i] is None]
        # Pieces of each live record: (text, trained) pairs, the final response last.
        pieces: list[list[tuple[str, bool]]] = []
        for i in live:
            if all_turns:
                segs = batch[SEGMENTS][i]
                recs = [(s, train_prompt or k % 2 == 1) for k, s in enumerate(segs)]
            else:
                recs = [(batch["prompt"][i], train_prompt)]
            recs.append((batch["response"][i], True))
            pieces.append(recs)
        flat = [text for recs in pieces for text, _ in recs]
        tails = [batch["prompt"][i][-PROMPT_WINDOW:] for i in live]
        cuts = [head_cut(batch["response"][i]) for i in live]
        heads = [batch["response"][i][: c or RESPONSE_WINDOW] for i, c in zip(live, cuts, strict=True)]
        if len(tail_ids) > _TAILS_KEPT:
            tail_ids.clear()
        new_tails = list({t for t in tails if t not in tail_ids})
        # Heads cut at a word boundary are a prefix of the response's own ids; only the others are encoded alone.
        apart = [j for j, c in enumerate(cuts) if not c]
        window_texts = [a + b for a, b in zip(tails, heads, strict=True)] + [heads[j] for j in apart] + new_tails
        encoded = backend.encode_batch_fast(flat + window_texts, add_special_tokens=False)
        ids_of = [e.ids for e in encoded]
        windows = ids_of[len(flat) :]
        m = len(live)
        head_ids = dict(zip(apart, windows[m : m + len(apart)], strict=True))
        tail_ids.update(zip(new_tails, windows[m + len(apart) :], strict=True))

        input_ids: list[list[int]] = [[] for _ in range(n)]
        labels: list[list[int]] = [[] for _ in range(n)]
        truncated: list[bool | None] = [None] * n
        drift: list[bool | None] = [None] * n
        k = 0
        for j, (i, recs) in enumerate(zip(live, pieces, strict=True)):
            src_ids, src_labels = list(prefix), [IGNORE] * len(prefix)
            for _, trained in recs[:-1]:
                part = ids_of[k]
                k += 1
                src_ids += part
                src_labels += part if trained else [IGNORE] * len(part)
            tgt = ids_of[k]
            k += 1
            joined, left = windows[j], tail_ids[tails[j]]
            right = head_ids[j] if j in head_ids else tgt[: max(len(joined) - len(left), 0)]
            drift[i] = bool(heads[j]) and joined != left + right
            result = fit(src_ids, src_labels, tgt, list(tgt), tok.eos_id, lengths, len(prefix))
            if result.problem is None and not result.truncated:
                input_ids[i], labels[i], truncated[i] = result.ids, result.labels, False
                continue
            facts = {"before": {"prompt": len(src_ids), "response": len(tgt) + 1}}
            if result.problem in LIMITS:
                limit = LIMITS[result.problem]
                drop[i] = f"too long: {limit}"
                detail[i] = json.dumps({**facts, "limit": {limit: getattr(lengths, limit)}})
                if result.policy == "error":
                    error[i] = (
                        f"{location(batch, i)}: longer than lengths.{limit} "
                        f"({len(src_ids)} prompt + {len(tgt) + 1} response tokens) and overflow is 'error'"
                    )
                continue
            facts["after"] = {"prompt": result.prompt_tokens, "response": result.response_tokens}
            if result.problem == "short":
                drop[i] = TOO_SHORT
                detail[i] = json.dumps({**facts, "min_target_tokens": lengths.min_target_tokens})
                continue
            detail[i] = json.dumps(facts)
            input_ids[i], labels[i], truncated[i] = result.ids, result.labels, True
        return {
            "input_ids": int32_lists(input_ids, drop),
            "labels": int32_lists(labels, drop),
            "_truncated": truncated,
            "_drift": drift,
            DROP: drop,
            ERROR: error,
            DETAIL: detail,
        }

    return encode
