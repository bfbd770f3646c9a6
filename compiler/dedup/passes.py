"""Deduplication, the pass between render and tokenize: exact copies and MinHash near-copies leave the build.

It needs the whole set, so it runs in two phases. Phase one is a plain batch pass, chained after render in the same
stream (in any engine): each record's compared text gets an exact key and its length, kept in memory beside the
split key, and a MinHash signature (num_perm x 4 bytes), written to a file that phase two memory-maps. Phase two is
global: exact keys and LSH bands give pairs (grouped by the engine), a union-find gives clusters, and each cluster
keeps one record (`keep`), preferring a training record, so that a validation record with a copy in training is
removed from validation and counted as leakage.

The split is decided here, before anything is dropped (the validation records are the ones with the smallest split
keys among the rendered records), and tokenize keeps it: a record moved between splits after dedup could bring a
copy of a training record into validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from dsc.compiler.audit import audit_rows, relative_file
from dsc.compiler.batch import BOOKKEEPING, Batch, Pass, field_column, source_ids
from dsc.compiler.dedup.lsh import Measure, Pairs, band_shape, find, jaccard, near_clusters, settled, union
from dsc.compiler.dedup.lsh import buckets as equal_key_pairs
from dsc.compiler.dedup.minhash import HASH_SCHEME, SCHEME, batch_signatures, exact_keys, shingle_sets
from dsc.compiler.dedup.settings import RENDERED, DedupSpec
from dsc.compiler.engine.spill import RowFile, Spill, take
from dsc.compiler.spec import Spec
from dsc.compiler.split import validation_mask

if TYPE_CHECKING:
    from dsc.compiler.engine import Engine
    from dsc.compiler.pipeline import Rendered

SIGNATURE = "_dedup_signature"
EXACT = "_dedup_exact"
LENGTH = "_dedup_length"
VALUE = "_dedup_value"
TEXT = "_dedup_text"
"""The compared text, kept on disk for the few pairs whose exact Jaccard is measured."""
VALIDATION = "_validation"
"""True for the records that go to validation; tokenize reads it instead of splitting again."""

MEASURE_PAIRS = 4096
"""Pairs whose exact Jaccard is measured at a time (their texts and shingle sets are in memory together)."""
REASONS = {"exact": "duplicate: exact", "near": "duplicate: near", "leakage": "duplicate: leakage"}
"""The drop reasons dedup reports in the manifest's counts."""


@dataclass
class Duplicates:
    """What dedup removed, as row indices into the rendered records, and the audit trail the package keeps."""

    dropped: np.ndarray
    kept: np.ndarray
    similarity: np.ndarray
    reason: np.ndarray
    validation: np.ndarray
    measured: np.ndarray
    """True where `similarity` is the exact Jaccard of the shingle sets (exact copies, and pairs whose estimate lay
    near the threshold); False where it is the MinHash estimate, far enough from the threshold to decide."""
    records: Spill | None = None
    """duplicates.jsonl's lines as columns, on disk (`deduplicate` writes them; `RECORDS` is the schema)."""
    counts: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def keep_mask(self) -> np.ndarray:
        """True for every rendered record dedup keeps."""
        keep = np.ones(len(self.validation), dtype=bool)
        keep[self.dropped] = False
        return keep

    def reasons(self) -> dict[str, int]:
        """Drop reason -> count, in the manifest's `dropped` vocabulary."""
        names, counts = np.unique(self.reason, return_counts=True)
        return {REASONS[str(n)]: int(c) for n, c in zip(names, counts, strict=True)}


def compared_texts(batch: Batch, dedup: DedupSpec) -> list[str]:
    """The text each record is compared on: the `compare` columns joined by newlines (a missing value is empty)."""
    columns = [batch[c] for c in _columns(dedup)]
    return ["\n".join("" if v is None else str(v) for v in values) for values in zip(*columns, strict=True)]


def _binary_rows(matrix: np.ndarray) -> pa.Array:
    """Each row of a uint32 matrix as one binary value, straight from its buffer (no Python object per row)."""
    width = matrix.shape[1] * 4
    offsets = np.arange(len(matrix) + 1, dtype=np.int32) * width
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix))]
    return pa.Array.from_buffers(pa.binary(), len(matrix), buffers)


def make_signature_pass(spec: Spec) -> Pass:
    """Phase one: exact key, signature, length and keep value of every record in a batch (the split key comes from render)."""
    dedup = spec.dedup
    assert dedup is not None

    def signature(batch: Batch) -> Batch:
        texts = compared_texts(batch, dedup)
        out: Batch = {LENGTH: [len(t) for t in texts]}
        if dedup.exact:
            out[EXACT] = exact_keys(texts, dedup.normalize)
        if dedup.near is not None:
            out[SIGNATURE] = _binary_rows(batch_signatures(texts, dedup.near, dedup.normalize))
            out[TEXT] = texts
        if dedup.keep.field is not None:
            out[VALUE] = [None if v is None else float(v) for v in batch[field_column(dedup.keep.field)]]
        return out

    return signature


def signature_schema(spec: Spec) -> pa.Schema:
    """The columns the signature pass adds (the signature and the text go to disk, the rest stays in memory)."""
    dedup = spec.dedup
    assert dedup is not None
    fields = [pa.field(LENGTH, pa.int64())]
    if dedup.exact:
        fields.append(pa.field(EXACT, pa.int64()))
    if dedup.near is not None:
        fields += [pa.field(SIGNATURE, pa.binary()), pa.field(TEXT, pa.string())]
    if dedup.keep.field is not None:
        fields.append(pa.field(VALUE, pa.float64()))
    return pa.schema(fields)


def signature_matrix(array: pa.Array, num_perm: int) -> np.ndarray:
    """A binary signature array as a (records, num_perm) uint32 matrix (a view of its buffer, no Python object per
    record)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    flat = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]] if len(array) else np.zeros(0, np.uint8)
    return flat.view(np.uint32).reshape(-1, num_perm)


def _rank(table: pa.Table, dedup: DedupSpec, validation: np.ndarray) -> np.ndarray:
    """Each record's place in its cluster's queue to be kept: training first, then the `keep` rule, then input order."""
    n = len(table)
    index = np.arange(n)
    if dedup.keep.rule == "longest":
        rule = -table.column(LENGTH).to_numpy()
    elif dedup.keep.rule in ("max", "min"):
        values = table.column(VALUE).to_numpy(zero_copy_only=False).astype(np.float64)
        rule = -values if dedup.keep.rule == "max" else values
        rule = np.where(np.isnan(rule), np.inf, rule)
    else:
        rule = index
    order = np.lexsort((index, rule, validation))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = index
    return rank


def _columns(dedup: DedupSpec) -> list[str]:
    return [name.split("_", 1)[1] if name in RENDERED else field_column(name) for name in dedup.compare]


Rows = np.ndarray | RowFile
"""A (records, num_perm) signature matrix: in memory, or on disk (`RowFile`)."""
Texts = Callable[[np.ndarray], list[str]]
"""The compared texts of some rows (`TextFile.texts` of the render's compared texts)."""


def exact_similarity(texts: Texts, dedup: DedupSpec) -> Measure:
    """Exact Jaccard of the shingle sets of row pairs, from their texts (for the few pairs an estimate cannot settle)."""
    near = dedup.near
    assert near is not None

    def measure_some(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rows = np.unique(np.concatenate((u, v)))
        sets = shingle_sets(texts(rows), near, dedup.normalize)
        at = {r: i for i, r in enumerate(rows.tolist())}
        return np.array([jaccard(sets[at[a]], sets[at[b]]) for a, b in zip(u.tolist(), v.tolist(), strict=True)])

    def measure(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # A slice of pairs at a time: the texts and shingle sets of every pair at once would grow with the set.
        parts = [measure_some(u[lo : lo + MEASURE_PAIRS], v[lo : lo + MEASURE_PAIRS]) for lo in range(0, len(u), MEASURE_PAIRS)]
        return np.concatenate(parts) if parts else np.empty(0)

    return measure


def clusters(table: pa.Table, dedup: DedupSpec, pairs: Pairs, signatures: Rows | None, texts: Texts | None) -> np.ndarray:
    """Phase two: the root of each record's cluster (its smallest member). `pairs` groups equal keys (an engine's
    `bucket_pairs`); `signatures` is the (records, num_perm) matrix and `texts` reads compared texts (None without
    `near`)."""
    n = len(table)
    parent = np.arange(n, dtype=np.int64)
    if dedup.exact:
        union(parent, *pairs(table.column(EXACT).to_numpy(), np.arange(n)))
    if dedup.near is not None:
        assert signatures is not None and texts is not None
        near = dedup.near
        bands, rows = (near.bands, near.rows) if near.bands else band_shape(near.threshold, near.num_perm)
        candidates = np.nonzero(table.column(LENGTH).to_numpy() > 0)[0]
        near_clusters(parent, signatures, candidates, near.threshold, bands, rows, exact_similarity(texts, dedup), pairs)
    return find(parent)


def decide(
    table: pa.Table,
    dedup: DedupSpec,
    validation: np.ndarray,
    pairs: Pairs = equal_key_pairs,
    signatures: Rows | None = None,
    texts: Texts | None = None,
) -> Duplicates:
    """Which records leave, which record of their cluster stays, how similar they are and why they leave."""
    roots = clusters(table, dedup, pairs, signatures, texts)
    rank = _rank(table, dedup, validation)
    best = np.full(len(table), len(table), dtype=np.int64)
    np.minimum.at(best, roots, rank)
    by_rank = np.argsort(rank)
    keeper = by_rank[best[roots]]
    moved = keeper != np.arange(len(table))
    if dedup.scope == "leakage":
        moved &= validation & ~validation[keeper]
    dropped = np.nonzero(moved)[0]
    kept = keeper[dropped]
    reason = np.where(validation[dropped] & ~validation[kept], "leakage", "near")
    exact = table.column(EXACT).to_numpy() if dedup.exact else None
    if exact is not None:
        reason = np.where((reason == "near") & (exact[dropped] == exact[kept]), "exact", reason)
    sims, measured = np.ones(len(dropped)), np.ones(len(dropped), dtype=bool)
    if signatures is not None:
        assert dedup.near is not None
        # Equal exact keys mean equal normalized texts, hence equal shingle sets: Jaccard 1, nothing to measure.
        near = exact[dropped] != exact[kept] if exact is not None else np.ones(len(dropped), dtype=bool)
        assert texts is not None
        measure = exact_similarity(texts, dedup)
        sims[near], measured[near] = settled(signatures, dropped[near], kept[near], dedup.near.threshold, measure)
    return Duplicates(dropped=dropped, kept=kept, similarity=sims, reason=reason, validation=validation, measured=measured)


def _counts(dups: Duplicates) -> dict[str, Any]:
    split = np.where(dups.validation[dups.dropped], "validation", "train")
    out: dict[str, Any] = {}
    for kind in ("exact", "near"):
        out[kind] = {s: int(np.sum((dups.reason == kind) & (split == s))) for s in ("train", "validation")}
    out["leakage"] = int(np.sum(dups.reason == "leakage"))
    return out


def _bookkeeping(table: pa.Table, rows: np.ndarray, columns: tuple[str, ...] = BOOKKEEPING) -> pa.Table:
    """Where some rows came from (the render keeps `_file` dictionary-encoded: a build names a handful of files)."""
    part = take(table.select(list(columns)), rows)
    return part.set_column(part.column_names.index("_file"), "_file", part.column("_file").cast(pa.string()))


def _source_ids(table: pa.Table, rows: np.ndarray) -> pa.Array:
    both = _bookkeeping(table, rows, ("_file", "_row"))
    return source_ids(both.column("_file"), both.column("_row"))


RECORDS = pa.schema(
    [
        ("source_id", pa.string()),
        ("kept_source_id", pa.string()),
        ("similarity", pa.float64()),
        ("measure", pa.string()),
        ("reason", pa.string()),
        ("split", pa.string()),
    ]
)
"""duplicates.jsonl's columns, one row per dropped record."""
SLICE = 65_536
"""Dropped records whose duplicates lines and audit rows are put together at a time (as Python text; the result goes
to disk), so neither is ever whole in memory."""


def _records(table: pa.Table, dups: Duplicates, lo: int, hi: int) -> pa.Table:
    """duplicates.jsonl's lines of dropped records lo..hi as columns (Arrow, not a Python object per record)."""
    validation = dups.validation[dups.dropped[lo:hi]]
    return pa.table(
        {
            "source_id": _source_ids(table, dups.dropped[lo:hi]),
            "kept_source_id": _source_ids(table, dups.kept[lo:hi]),
            "similarity": pa.array([round(s, 4) for s in dups.similarity[lo:hi].tolist()], pa.float64()),
            "measure": pa.array(np.where(dups.measured[lo:hi], "exact", "minhash"), pa.string()),
            "reason": pa.array(dups.reason[lo:hi].astype(str), pa.string()),
            "split": pa.array(np.where(validation, "validation", "train"), pa.string()),
        },
        schema=RECORDS,
    )


def _json_values(values: list[Any]) -> list[str]:
    """Each value as `json.dumps` writes it, encoding each distinct value once (a column repeats most of its values)."""
    encoded = {v: json.dumps(v) for v in set(values)}
    return [encoded[v] for v in values]


def _audit(table: pa.Table, dups: Duplicates, records: pa.Table, folder: Path, lo: int, hi: int) -> pa.Table:
    """The audit rows of dropped records lo..hi (`records` holds their duplicates lines): the kept record (its file
    and line too) and the similarity that decided.

    The detail is what `json.dumps` of {kept_source_id, kept_file, kept_line, similarity, measure, split} gives, put
    together from each column's encoded values instead of one dumps per row."""
    kept = _bookkeeping(table, dups.kept[lo:hi], ("_file", "_line"))
    kept_files = [relative_file(f, folder) for f in kept.column("_file").to_pylist()]
    columns = [records.column(key).to_pylist() for key in ("kept_source_id", "similarity", "measure", "split")]
    source_ids, similarities, measures, splits = (_json_values(c) for c in columns)
    files, lines = _json_values(kept_files), _json_values(kept.column("_line").to_pylist())
    details = [
        f'{{"kept_source_id": {k}, "kept_file": {f}, "kept_line": {line}, "similarity": {s}, "measure": {m}, "split": {p}}}'
        for k, f, line, s, m, p in zip(source_ids, files, lines, similarities, measures, splits, strict=True)
    ]
    reasons = pa.array([REASONS[r] for r in dups.reason[lo:hi].tolist()], pa.string())
    return audit_rows(_bookkeeping(table, dups.dropped[lo:hi]), "duplicate", reasons, pa.array(details, pa.string()))


def settings(dedup: DedupSpec) -> dict[str, Any]:
    """What the manifest records so a reader can reproduce the decisions: the resolved section and the hashing."""
    out: dict[str, Any] = {
        "compare": list(dedup.compare),
        "exact": dedup.exact,
        "normalize": asdict(dedup.normalize),
        "keep": asdict(dedup.keep),
        "scope": dedup.scope,
        "near": None,
    }
    if dedup.near is not None:
        near = dedup.near
        bands, rows = (near.bands, near.rows) if near.bands else band_shape(near.threshold, near.num_perm)
        out["near"] = {
            **asdict(near),
            "bands": bands,
            "rows": rows,
            "permutation_scheme": SCHEME,
            "hash_scheme": HASH_SCHEME,
            "datasketch": metadata.version("datasketch"),
        }
    return out


def deduplicate(spec: Spec, rendered: Rendered, engine: Engine | None = None) -> Duplicates:
    """The global step over the rendered records (a `dsc.compiler.pipeline.Rendered` whose render computed the
    signatures): which records stay, the split of every record, duplicates.jsonl's lines (to disk) and the audit
    rows (added to the render's trail). `engine` groups the keys (its `bucket_pairs`; numpy in this process without
    one).

    Memory: it reads only what phase one kept for it. A few numbers per record are in memory (where it came from,
    keys, lengths, cluster roots); the signatures and compared texts are on disk and read a block of rows at a time."""
    dedup = spec.dedup
    assert dedup is not None and rendered.signatures is not None, "render with signatures=True first"
    table = rendered.signatures
    validation = validation_mask(rendered.keys, spec.split)
    texts = rendered.compared.texts if rendered.compared is not None else None
    pairs = engine.bucket_pairs if engine is not None else equal_key_pairs
    dups = decide(table, dedup, validation, pairs, rendered.signature_rows, texts)
    dups.counts = _counts(dups)
    dups.settings = settings(dedup)
    dups.records = rendered.workspace.spill("duplicates", RECORDS)
    for lo in range(0, len(dups.dropped), SLICE):
        hi = min(lo + SLICE, len(dups.dropped))
        records = _records(table, dups, lo, hi)
        dups.records.write(records)
        rendered.audit.add(_audit(table, dups, records, spec.path.parent, lo, hi))
    dups.records.close()
    return dups
