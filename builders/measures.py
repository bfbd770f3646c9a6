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
SCRIPTS = {
    "Latin": r"\p{Latin}",
    "CJK": r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]",
}
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
    flat = pc.list_flatten(labels).to_numpy(zero_copy_only=False)
    record = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    position = np.arange(len(flat)) - np.repeat(starts, lengths)
    trained = flat != IGNORE
    previous = np.concatenate([[False], trained[:-1]]) & (position > 0)
    span_start = trained & ~previous
    masked_start = ~trained & (np.concatenate([[True], trained[:-1]]) | (position == 0))
    first = np.array(lengths)
    rows, at = np.unique(record[trained], return_index=True)
    first[rows] = position[trained][at]
    return TokenMeasures(
        total=lengths,
        lead=first,
        trained=np.bincount(record, weights=trained, minlength=n).astype(np.int64),
        spans=np.bincount(record, weights=span_start, minlength=n).astype(np.int64),
        masked_spans=np.bincount(record, weights=masked_start, minlength=n).astype(np.int64),
    )


def quantiles(values: np.ndarray) -> dict[str, float]:
    """min, mean, p50, p95, max (empty: all zero)."""
    if not len(values):
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 1),
        "p50": int(np.percentile(values, 50)),
        "p95": int(np.percentile(values, 95)),
        "max": int(values.max()),
    }


def _count(table: pa.Table, pattern: str) -> np.ndarray:
    """Matches of a regex per record, in prompt and response together."""
    return sum(pc.count_substring_regex(table.column(c), pattern).to_numpy(zero_copy_only=False) for c in ("prompt", "response"))


def script_mix(tables: list[pa.Table]) -> dict[str, dict[str, int]]:
    """Letters by script over prompt and response text (`characters`), and records by their main script (`records`)."""
    chars: Counter[str] = Counter()
    records: Counter[str] = Counter()
    for table in tables:
        counted = {}
        letters = _count(table, r"\p{L}")
        for name, pattern in SCRIPTS.items():
            counted[name] = _count(table, pattern)
        counted["other"] = letters - sum(counted.values())
        names = list(counted)
        stacked = np.vstack([counted[k] for k in names]) if len(table) else np.zeros((len(names), 0), dtype=np.int64)
        main = np.argmax(stacked, axis=0)
        main_name = np.array(names, dtype=object)[main]
        main_name[stacked.sum(axis=0) == 0] = "no letters"
        for k in names:
            chars[k] += int(counted[k].sum())
        keys, n = np.unique(main_name.astype(str), return_counts=True)
        records.update(dict(zip(keys.tolist(), n.tolist(), strict=True)))
    return {"characters": dict(chars), "records": dict(records)}


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
               audit: list[dict[str, Any]] | None, names: list[str]) -> list[SourceRow]:
    """Records read, kept per split, tokens and trained tokens, and (with an audit) records left out per stage, by source."""
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
    left_out: dict[str, Counter[str]] = defaultdict(Counter)
    for line in audit or []:
        if line.get("stage") != "truncated":
            left_out[str(line.get("source_id", "")).rsplit("#", 1)[0]][str(line.get("stage"))] += 1
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


def clusters(duplicates: list[dict[str, Any]]) -> list[Cluster]:
    """duplicates.jsonl grouped by the record each cluster kept, largest first (then by the kept id)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in duplicates:
        grouped[str(record["kept_source_id"])].append(record)
    out = [Cluster(kept, members) for kept, members in grouped.items()]
    out.sort(key=lambda c: (-c.size, c.kept))
    return out
