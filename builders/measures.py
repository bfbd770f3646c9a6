"""What the report measures, computed over whole columns (Arrow compute and numpy; no loop over records).

Token measures come from the labels alone, so they hold for every kind of package: the masked lead (the prompt, when
the spec does not train on it), trained tokens, and trained spans (assistant turns in a conversation).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.builders.package_view import source_names

IGNORE = -100
SCRIPTS = ("Latin", "CJK", "other")
_BLOCKS = sorted([
    # (first, last, script): letters by Unicode block; digits, punctuation, symbols and spaces count under none
    *((a, b, 0) for a, b in ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x1E00, 0x1EFF),
                            (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))),
    *((a, b, 1) for a, b in ((0x1100, 0x11FF), (0x3040, 0x30FF), (0x3130, 0x318F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
                            (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))),
    *((a, b, 2) for a, b in ((0x370, 0x1DFF), (0x1F00, 0x1FFF), (0x2C00, 0x2DFF), (0xA000, 0xABFF), (0xFB00, 0xFDFF),
                            (0xFE70, 0xFEFF))),
])
_FIRST = np.array([b[0] for b in _BLOCKS], dtype=np.uint32)
_LAST = np.array([b[1] for b in _BLOCKS], dtype=np.uint32)
_SCRIPT = np.array([b[2] for b in _BLOCKS], dtype=np.int64)
_ASCII_LETTER = np.zeros(256, dtype=bool)
_ASCII_LETTER[[*range(0x41, 0x5B), *range(0x61, 0x7B)]] = True
OPENING_CHARS = 60


@dataclass
class TokenMeasures:
    """Per record of one split: tokens, the masked lead before the first trained token, trained tokens and spans."""

    total: np.ndarray
    lead: np.ndarray
    trained: np.ndarray
    spans: np.ndarray
    masked_spans: np.ndarray

    @property
    def rest(self) -> np.ndarray:
        """Tokens from the first trained one to the end (the response with its EOS, in a prompt/response package)."""
        return self.total - self.lead

    @property
    def share(self) -> np.ndarray:
        """The trained share of each record's tokens."""
        return self.trained / np.maximum(self.total, 1)


def token_measures(table: pa.Table) -> TokenMeasures:
    """Token measures of every record of a split, from its `labels` column."""
    labels = table.column("labels")
    lengths = pc.list_value_length(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(lengths)
    if not n:
        empty = np.zeros(0, np.int64)
        return TokenMeasures(total=empty, lead=empty, trained=empty, spans=empty, masked_spans=empty)
    flat = pc.list_flatten(labels).to_numpy(zero_copy_only=False)
    record = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    position = np.arange(len(flat)) - np.repeat(starts, lengths)
    trained = flat != IGNORE
    previous = np.concatenate([[False], trained[:-1]]) & (position > 0)
    span_start = trained & ~previous
    masked_start = ~trained & (np.concatenate([[True], trained[:-1]]) | (position == 0))
    first = np.array(lengths)  # records without a trained token: all of it is the lead
    starts_at = np.flatnonzero(span_start)  # sorted by record, so each record's first span start comes first
    owner = record[starts_at]
    leading = np.concatenate([[True], owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, dtype=bool)
    first[owner[leading]] = position[starts_at[leading]]
    return TokenMeasures(
        total=lengths,
        lead=first,
        trained=np.bincount(record, weights=trained, minlength=n).astype(np.int64),
        spans=np.bincount(record, weights=span_start, minlength=n).astype(np.int64),
        masked_spans=np.bincount(record, weights=masked_start, minlength=n).astype(np.int64),
    )


def _letters(strings: pa.Array) -> np.ndarray:
    """Letters per string and script, an (n, len(SCRIPTS)) count, straight from the Arrow UTF-8 buffers.

    ASCII letters are counted with a running sum over the bytes; only multi-byte characters are decoded to code points
    and looked up in the block table."""
    n = len(strings)
    out = np.zeros((n, len(SCRIPTS)), dtype=np.int64)
    wide = pa.types.is_large_string(strings.type)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64 if wide else np.int32)[strings.offset : strings.offset + n + 1]
    if not n or offsets[-1] == offsets[0]:
        return out
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    bounds = (offsets - offsets[0]).astype(np.int64)
    running = np.concatenate([[0], np.cumsum(_ASCII_LETTER[data], dtype=np.int64)])
    out[:, 0] = running[bounds[1:]] - running[bounds[:-1]]
    at = np.flatnonzero(data >= 0xC0)  # the first byte of every multi-byte character
    if len(at):
        padded = np.concatenate([data, np.zeros(3, np.uint8)]).astype(np.uint32)
        b0, b1, b2, b3 = padded[at], padded[at + 1] & 0x3F, padded[at + 2] & 0x3F, padded[at + 3] & 0x3F
        points = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | b1, np.where(
            b0 < 0xF0, ((b0 & 0x0F) << 12) | (b1 << 6) | b2, ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3))
        block = np.searchsorted(_FIRST, points, side="right") - 1
        inside = (block >= 0) & (points <= _LAST[np.maximum(block, 0)])
        owner = np.searchsorted(bounds, at[inside], side="right") - 1
        out += np.bincount(owner * len(SCRIPTS) + _SCRIPT[block[inside]], minlength=n * len(SCRIPTS)).reshape(n, len(SCRIPTS))
    return out


def script_mix(tables: list[pa.Table]) -> dict[str, dict[str, int]]:
    """Letters by script (Unicode blocks) over prompt and response text (`characters`), and records by the script most
    of their letters are in (`records`)."""
    chars = np.zeros(len(SCRIPTS), dtype=np.int64)
    records: Counter[str] = Counter()
    names = np.array([*SCRIPTS, "no letters"])
    for table in tables:
        for batch in table.select(["prompt", "response"]).to_batches(max_chunksize=8192):
            counts = _letters(batch.column(0)) + _letters(batch.column(1))
            chars += counts.sum(axis=0)
            main = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), len(SCRIPTS))
            records.update(dict(zip(*(x.tolist() for x in np.unique(names[main], return_counts=True)), strict=True)))
    return {"characters": dict(zip(SCRIPTS, chars.tolist(), strict=True)), "records": dict(records)}


def openings(tables: list[pa.Table], top: int = 10) -> list[tuple[str, int]]:
    """The most common prompt openings (first line, cut to OPENING_CHARS characters): which templates cover what."""
    if not tables:
        return []
    prompts = pa.chunked_array([c for t in tables for c in t.column("prompt").chunks], type=pa.string())
    first = pc.list_element(pc.split_pattern(prompts, "\n", max_splits=1), 0)
    cut = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(first), 0, OPENING_CHARS)
    counts = pc.value_counts(cut).to_pylist()
    counts.sort(key=lambda c: (-c["counts"], c["values"]))
    return [(c["values"], c["counts"]) for c in counts[:top]]


@dataclass
class SourceRow:
    """One source's line in the per-source table."""

    name: str
    read: int | None
    kept: dict[str, int]
    tokens: int
    trained: int
    left_out: dict[str, int]


def per_source(view_inputs: list[dict[str, Any]], tables: dict[str, pa.Table], measures: dict[str, TokenMeasures],
               left_out: dict[str, Counter[str]], names: list[str]) -> list[SourceRow]:
    """Records read, kept per split, tokens and trained tokens, and records left out per stage (from the audit), by source."""
    read = {name: entry.get("records") for name, entry in zip(names, view_inputs, strict=True)}
    kept: dict[str, dict[str, int]] = defaultdict(dict)
    tokens: Counter[str] = Counter()
    trained: Counter[str] = Counter()
    for split, table in tables.items():
        grouped = pa.table({
            "source": source_names(table.column("source_id")),
            "tokens": measures[split].total,
            "trained": measures[split].trained,
        }).group_by("source").aggregate([("tokens", "count"), ("tokens", "sum"), ("trained", "sum")])
        for row in grouped.to_pylist():
            kept[row["source"]][split] = row["tokens_count"]
            tokens[row["source"]] += row["tokens_sum"]
            trained[row["source"]] += row["trained_sum"]
    every = list(dict.fromkeys([*read, *sorted(kept), *sorted(left_out)]))
    return [SourceRow(name, read.get(name), kept.get(name, {}), tokens[name], trained[name], dict(left_out.get(name, {})))
            for name in every]


@dataclass
class Cluster:
    """A duplicate cluster: the record kept and the records dropped for it (source_id, reason, similarity, split)."""

    kept: str
    dropped: list[dict[str, Any]]

    @property
    def size(self) -> int:
        return 1 + len(self.dropped)
