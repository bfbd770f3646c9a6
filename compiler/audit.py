"""The audit trail: every record that did not go into the package as it came, where it came from, and why.

Each phase of the pipeline hands over the rows it marked (dropped, truncated, removed as a copy) as a small Arrow
table in one schema, taken with Arrow compute filters before the phase's rows are filtered; the kept, untouched rows
never pass through Python here. A `Trail` keeps the rows on disk as they come (a build can drop millions of records);
`records` turns them into the lines of `audit.jsonl`, sorted by source and row, a slice at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.compiler.batch import BOOKKEEPING, DETAIL, DROP, source_id
from dsc.compiler.engine.spill import Spill, Workspace, take

STAGES = ("invalid", "dropped", "truncated", "duplicate")
"""invalid: failed validation, derive or render; dropped: a length rule removed it; truncated: kept, but cut;
duplicate: dedup removed it in favour of a kept copy."""

SCHEMA = pa.schema(
    [
        ("_source", pa.int32()),
        ("_file", pa.string()),
        ("_row", pa.int64()),
        ("_line", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


def no_audit() -> pa.Table:
    """An audit with no rows."""
    return SCHEMA.empty_table()


class Trail:
    """A build's audit rows, on disk in its workspace as the phases `add` them (one spill per run of adds: a trail
    read and then added to again starts a new part)."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace
        self._parts: list[Spill] = []

    def add(self, rows: pa.Table) -> None:
        if not len(rows):
            return
        if not self._parts or self._parts[-1].closed:
            self._parts.append(self._workspace.spill("audit", SCHEMA))
        self._parts[-1].write(rows)

    def __len__(self) -> int:
        return sum(part.rows for part in self._parts)

    def chunks(self) -> Iterator[pa.Table]:
        """The rows as added, a chunk at a time (plain reads)."""
        for part in self._parts:
            yield from part.chunks()

    def table(self) -> pa.Table:
        """Every row, memory-mapped (pages stay in this process until `release_pages`)."""
        return pa.concat_tables([no_audit(), *(part.table() for part in self._parts)])

    def release_pages(self) -> None:
        for part in self._parts:
            part.release_pages()


def audit_rows(rows: pa.Table, stage: str, reasons: pa.Array | pa.ChunkedArray, details: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Audit rows for `rows` (which carry the bookkeeping columns): one stage, a reason and a JSON detail each."""
    arrays = [*(rows.column(c) for c in BOOKKEEPING), pa.repeat(pa.scalar(stage), len(rows)), reasons, details]
    return pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, SCHEMA, strict=True)], schema=SCHEMA)


def marked(table: pa.Table, mask: pa.Array | pa.ChunkedArray, stage: str, reason: str | None = None) -> pa.Table:
    """The rows `mask` selects as audit rows: the reason is `reason`, or each row's `_drop`; the detail is the
    `_detail` facts a pass left."""
    columns = [*BOOKKEEPING, *(c for c in (DROP, DETAIL) if c in table.column_names)]
    rows = table.select(columns).filter(mask)
    reasons = rows.column(DROP) if reason is None else pa.repeat(pa.scalar(reason), len(rows))
    details = rows.column(DETAIL) if DETAIL in rows.column_names else pa.nulls(len(rows), pa.string())
    return audit_rows(rows, stage, reasons, details)


def dropped_rows(table: pa.Table, stage: str) -> pa.Table:
    """Audit rows for every row of a phase's output that a pass dropped."""
    return marked(table, pc.is_valid(table.column(DROP)), stage)


@lru_cache(maxsize=4096)
def relative_file(file: str, folder: Path) -> str:
    """A source file as the audit names it: relative to the spec's folder (`hub:<id>` stays as it is).

    Cached: callers ask once per audit row, and a build has a handful of files (relpath is slow: it resolves both)."""
    if file.startswith("hub:"):
        return file
    return Path(os.path.relpath(file, folder)).as_posix()


SLICE = 8192
"""Audit rows turned into Python lines at a time: the audit of a large build is never all Python objects at once."""


def _sort_order(trail: Trail) -> tuple[np.ndarray, list[str]]:
    """The trail's rows in (source, file, row) order, stable, and the files named: the sort reads only those three
    columns into memory."""
    ids: dict[str, int] = {}
    sources, files, rows = [], [], []
    for chunk in trail.chunks():
        encoded = chunk.column("_file").combine_chunks().dictionary_encode()
        local = np.array([ids.setdefault(f, len(ids)) for f in encoded.dictionary.to_pylist()], dtype=np.int64)
        files.append(local[encoded.indices.to_numpy()])
        # Copies: a view would keep the whole chunk it was read with (one buffer) alive.
        sources.append(chunk.column("_source").to_numpy().copy())
        rows.append(chunk.column("_row").to_numpy().copy())
    if not ids:
        return np.zeros(0, dtype=np.int64), []
    rank = np.empty(len(ids), dtype=np.int64)
    rank[[ids[f] for f in sorted(ids)]] = np.arange(len(ids))
    return np.lexsort((np.concatenate(rows), rank[np.concatenate(files)], np.concatenate(sources))), list(ids)


def records(trail: Trail, folder: Path) -> Iterator[dict[str, Any]]:
    """The audit's lines, sorted by source, file and row: {source_id, file, line, stage, reason, detail}."""
    order, names = _sort_order(trail)
    audit = trail.table()
    files = {f: relative_file(f, folder) for f in names}
    for start in range(0, len(order), SLICE):
        part = take(audit, order[start : start + SLICE])
        columns = [part.column(c).to_pylist() for c in ("_file", "_row", "_line", "stage", "reason")]
        for f, r, line, stage, reason, detail in zip(*columns, _details(part.column("detail").to_pylist()), strict=True):
            yield {"source_id": source_id(f, r), "file": files[f], "line": line, "stage": stage, "reason": reason, "detail": detail}
        trail.release_pages()


def json_texts(texts: list[str]) -> list[Any]:
    """JSON texts parsed in one decoder call, as an array; texts that do not parse one to one that way (a bad one, or
    one holding more than one value) are parsed one by one, so a bad one fails as it would alone."""
    try:
        parsed = json.loads("[" + ",".join(texts) + "]")
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(texts):
        parsed = [json.loads(t) for t in texts]
    return parsed


def _details(texts: list[str | None]) -> list[Any]:
    """Each JSON detail parsed ({} when there is none)."""
    values = iter(json_texts([t for t in texts if t]))
    return [next(values) if t else {} for t in texts]


def counts(trail: Trail) -> dict[str, int]:
    """How many audit rows each stage has."""
    found = dict.fromkeys(STAGES, 0)
    for chunk in trail.chunks():
        for v in pc.value_counts(chunk.column("stage")):
            found[v["values"].as_py()] += v["counts"].as_py()
    return found
