"""What the report measures, computed a slice of records at a time (Arrow compute and numpy; no loop over records).

Token measures come from the labels alone, so they hold for every kind of package: the masked lead (the prompt, when
the spec does not train on it), trained tokens, and trained spans (assistant turns in a conversation).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.builders.package_view import Split, source_names

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
PIECE_TOKENS = 1 << 20
"""Tokens measured at once (`token_measures` holds ~40 bytes per token while it works)."""
PIECE_BYTES = 1 << 22
"""Bytes of text counted by script at once (`ScriptTally` holds ~10 bytes per byte while it works)."""
MERGE_ROWS = 1 << 16
"""Distinct openings counted before the first merge (`OpeningTally`)."""
OPENINGS_KEPT = 1 << 18
"""Distinct openings counted exactly; past them the count is a bounded summary (`OpeningTally`): ~25 MB of openings."""
TOP_OPENINGS = 10
RECOUNTED = 100
"""Candidates a summary's top openings are chosen from, after an exact count."""


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

    @classmethod
    def concat(cls, parts: list[TokenMeasures]) -> TokenMeasures:
        """The measures of consecutive slices of a split, as one."""
        names = ("total", "lead", "trained", "spans", "masked_spans")
        return cls(**{n: np.concatenate([np.zeros(0, np.int32), *(getattr(p, n) for p in parts)]) for n in names})


def pieces(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) record ranges whose sizes add up to about `budget` at most (a record larger than the
    budget alone): the measures below hold a few numbers per token or byte, so they take a piece at a time."""
    ends = np.cumsum(sizes, dtype=np.int64)
    cuts = [0]
    while cuts[-1] < len(sizes):
        start = cuts[-1]
        base = ends[start - 1] if start else 0
        cuts.append(max(start + 1, int(np.searchsorted(ends, base + budget, side="right"))))
    return list(itertools.pairwise(cuts))


def token_measures(table: pa.Table) -> TokenMeasures:
    """Token measures of every record of a split, from its `labels` column, PIECE_TOKENS tokens at a time."""
    labels = table.column("labels")
    sizes = pc.list_value_length(labels).to_numpy(zero_copy_only=False)
    return TokenMeasures.concat([_token_measures(labels.slice(a, b - a)) for a, b in pieces(sizes, PIECE_TOKENS)])


def _token_measures(labels: pa.ChunkedArray) -> TokenMeasures:
    lengths = pc.list_value_length(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(lengths)
    if not n:
        empty = np.zeros(0, np.int32)
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
    return TokenMeasures(  # int32: a split's measures stay in memory, 20 bytes per record
        total=lengths.astype(np.int32),
        lead=first.astype(np.int32),
        trained=np.bincount(record, weights=trained, minlength=n).astype(np.int32),
        spans=np.bincount(record, weights=span_start, minlength=n).astype(np.int32),
        masked_spans=np.bincount(record, weights=masked_start, minlength=n).astype(np.int32),
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


class ScriptTally:
    """Letters by script (Unicode blocks) over prompt and response text (`characters`), and records by the script most
    of their letters are in (`records`), added up a table at a time."""

    def __init__(self) -> None:
        self.characters = np.zeros(len(SCRIPTS), dtype=np.int64)
        self.records: Counter[str] = Counter()

    def add(self, table: pa.Table) -> None:
        names = np.array([*SCRIPTS, "no letters"])
        texts = table.select(["prompt", "response"])
        sizes = pc.add(pc.binary_length(texts.column(0)), pc.binary_length(texts.column(1))).to_numpy(zero_copy_only=False)
        for a, b in pieces(sizes, PIECE_BYTES):
            batch = texts.slice(a, b - a).combine_chunks()
            counts = _letters(batch.column(0).chunk(0)) + _letters(batch.column(1).chunk(0))
            self.characters += counts.sum(axis=0)
            main = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), len(SCRIPTS))
            self.records.update(dict(zip(*(x.tolist() for x in np.unique(names[main], return_counts=True)), strict=True)))

    def mix(self) -> dict[str, dict[str, int]]:
        return {"characters": dict(zip(SCRIPTS, self.characters.tolist(), strict=True)), "records": dict(self.records)}


def _openings(prompts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each prompt's first line, trimmed and cut to OPENING_CHARS characters."""
    first = pc.list_element(pc.split_pattern(prompts.cast(pa.string()), "\n", max_splits=1), 0)
    return pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(first), 0, OPENING_CHARS)


class OpeningTally:
    """How many prompts open with each first line (`_openings`): which templates cover what.

    Counted a table at a time; the counts of the tables since the last merge are merged into the running counts once
    they outgrow them (amortized linear cost). Memory is bounded: past OPENINGS_KEPT distinct openings, a merge keeps
    the Misra-Gries summary (every count lowered by the (OPENINGS_KEPT + 1)-th largest, those left at zero dropped),
    so a count is short of the true one by at most `bound`; `measure` then counts its candidates again exactly."""

    def __init__(self) -> None:
        self._merged = pa.table({"values": pa.array([], pa.string()), "counts": pa.array([], pa.int64())})
        self._pending: list[pa.Table] = []
        self.bound = 0
        """How far short of the true count a count can be (0: every count exact)."""

    def add(self, prompts: pa.ChunkedArray | pa.Array) -> None:
        self._count(_openings(prompts))

    def _count(self, openings: pa.Array) -> None:
        counts = pc.value_counts(openings)
        self._pending.append(pa.table({"values": counts.field("values"), "counts": counts.field("counts")}))
        if sum(len(t) for t in self._pending) > max(MERGE_ROWS, len(self._merged)):
            self._merge()

    def _merge(self) -> None:
        if self._pending:
            both = pa.concat_tables([self._merged, *self._pending]).group_by("values").aggregate([("counts", "sum")])
            self._merged = pa.table({"values": both.column("values"), "counts": both.column("counts_sum")})
            self._pending = []
        if len(self._merged) > OPENINGS_KEPT:
            counts = self._merged.column("counts").to_numpy()
            cut = int(np.partition(counts, len(counts) - OPENINGS_KEPT - 1)[len(counts) - OPENINGS_KEPT - 1])
            left = pc.subtract(self._merged.column("counts"), cut)
            self._merged = self._merged.set_column(1, "counts", left).filter(pc.greater(left, 0))
            self.bound += cut

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        """The `n` most common openings, most common first (ties: in text order)."""
        self._merge()
        order = pc.sort_indices(self._merged, [("counts", "descending"), ("values", "ascending")])
        best = self._merged.take(order[:n])
        return list(zip(best.column("values").to_pylist(), best.column("counts").to_pylist(), strict=True))

    def recount(self, prompts: Iterator[pa.ChunkedArray], n: int) -> list[tuple[str, int]]:
        """The `n` most common openings after counting the summary's RECOUNTED best exactly over `prompts`."""
        candidates = pa.array([value for value, _ in self.top(RECOUNTED)], pa.string())
        exact = OpeningTally()
        for column in prompts:
            openings = _openings(column)
            exact._count(openings.filter(pc.is_in(openings, value_set=candidates)))
        return exact.top(n)


@dataclass
class Measures:
    """Everything the report measures of a package's records, gathered in one walk over each split, a slice at a time."""

    tokens: dict[str, TokenMeasures]
    sources: dict[str, dict[str, list[int]]]
    """By source, then split: records, tokens and trained tokens."""
    scripts: dict[str, dict[str, int]]
    openings: list[tuple[str, int]]
    openings_bound: int = 0
    """0 when the openings were counted over every distinct opening; else an opening of this many records or fewer
    may be missing from them (`OpeningTally`)."""


MEASURED = ["labels", "prompt", "response", "source_id"]


def measure(splits: dict[str, Split]) -> Measures:
    """Token measures per split, per-source sums, the script mix and the prompt openings, from one read of each split."""
    tokens: dict[str, TokenMeasures] = {}
    sources: dict[str, dict[str, list[int]]] = defaultdict(dict)
    scripts, opened = ScriptTally(), OpeningTally()
    for split, data in splits.items():
        parts = []
        for table in data.slices(MEASURED):
            part = token_measures(table)
            parts.append(part)
            grouped = pa.table({"source": source_names(table.column("source_id")), "tokens": part.total, "trained": part.trained})
            sums = grouped.group_by("source").aggregate([("tokens", "count"), ("tokens", "sum"), ("trained", "sum")])
            for row in sums.to_pylist():
                counts = sources[row["source"]].setdefault(split, [0, 0, 0])
                for i, key in enumerate(("tokens_count", "tokens_sum", "trained_sum")):
                    counts[i] += row[key]
            scripts.add(table)
            opened.add(table.column("prompt"))
        tokens[split] = TokenMeasures.concat(parts)
    top = opened.top(TOP_OPENINGS)
    if opened.bound:  # the counts are a summary's: count its best candidates again, exactly
        top = opened.recount((t.column("prompt") for data in splits.values() for t in data.slices(["prompt"])), TOP_OPENINGS)
    return Measures(tokens=tokens, sources=dict(sources), scripts=scripts.mix(), openings=top, openings_bound=opened.bound)


@dataclass
class SourceRow:
    """One source's line in the per-source table."""

    name: str
    read: int | None
    kept: dict[str, int]
    tokens: int
    trained: int
    left_out: dict[str, int]


def per_source(view_inputs: list[dict[str, Any]], sources: dict[str, dict[str, list[int]]],
               left_out: dict[str, Counter[str]], names: list[str]) -> list[SourceRow]:
    """Records read, kept per split, tokens and trained tokens (`Measures.sources`), and records left out per stage
    (from the audit), by source."""
    read = {name: entry.get("records") for name, entry in zip(names, view_inputs, strict=True)}
    every = list(dict.fromkeys([*read, *sorted(sources), *sorted(left_out)]))
    rows = []
    for name in every:
        splits = sources.get(name, {})
        rows.append(SourceRow(name, read.get(name), {s: n[0] for s, n in splits.items()}, sum(n[1] for n in splits.values()),
                              sum(n[2] for n in splits.values()), dict(left_out.get(name, {}))))
    return rows


@dataclass
class Cluster:
    """A duplicate cluster: the record kept and the records dropped for it (source_id, reason, similarity, split)."""

    kept: str
    dropped: list[dict[str, Any]]

    @property
    def size(self) -> int:
        return 1 + len(self.dropped)
