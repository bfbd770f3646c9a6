"""What the report keeps of a package's side files (audit.jsonl, duplicates file), read a batch of lines at a time.

A build that drops most of what it reads has a side-file line per record read; held as dicts those lines would be the
build's peak memory. So each section's needs are gathered in one pass: counts and the first few lines per reason,
per-source counts, the truncated records' lengths as int columns, the duplicates' kept ids as one Arrow column (for
cluster sizes), and full lines only for the few clusters and examples the page shows.
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.builders.measures import Cluster
from dsc.builders.package_view import SideFiles

EXAMPLES = 5
CLUSTERS = 5

Key = tuple[str, str]


def plain_reason(stage: str, reason: str) -> str:
    """A reason without the stage it repeats (`duplicate: exact` -> `exact`)."""
    return reason.split(": ", 1)[1] if reason.startswith(f"{stage}: ") else reason


def detail_of(line: dict[str, Any]) -> dict[str, Any]:
    """An audit line's detail as a dict (a detail of another shape is shown as is, but holds no fields to read)."""
    detail = line.get("detail")
    return detail if isinstance(detail, dict) else {}


def sides(entry: Any) -> dict[str, int]:
    """A before/after length entry's int fields by side, with their total when the entry has none."""
    if not isinstance(entry, dict):
        return {}
    found = {k: int(v) for k, v in entry.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if "total" not in found and found:
        found["total"] = sum(found.values())
    return found


@dataclass
class SideColumns:
    """One int64 column per side over a run of entries, a side an entry lacks counting 0 (8 bytes a value, not a dict)."""

    rows: int = 0
    columns: dict[str, array] = field(default_factory=dict)

    def add(self, entry: dict[str, int]) -> None:
        for side, value in entry.items():
            if side not in self.columns:
                self.columns[side] = array("q", bytes(8 * self.rows))
            self.columns[side].append(value)
        self.rows += 1
        for column in self.columns.values():
            if len(column) < self.rows:
                column.append(0)

    def values(self, side: str) -> np.ndarray:
        """The side's values, one per entry (zeros for a side never seen)."""
        column = self.columns.get(side)
        return np.frombuffer(column, dtype=np.int64).copy() if column is not None else np.zeros(self.rows, np.int64)


@dataclass
class AuditSummary:
    """What the report reads of the audit: counts and first lines per (stage, reason), truncated lengths, per-source
    counts of records left out, and the detail of the duplicates it shows."""

    present: bool
    counts: Counter[Key] = field(default_factory=Counter)
    examples: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    before: SideColumns = field(default_factory=SideColumns)
    after: SideColumns = field(default_factory=SideColumns)
    left_out: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, line: dict[str, Any], wanted: set[str]) -> None:
        """Count one line; keep it whole only while its reason has under EXAMPLES shown."""
        stage = str(line.get("stage", ""))
        key = (stage, plain_reason(stage, str(line.get("reason", ""))))
        self.counts[key] += 1
        shown = self.examples.setdefault(key, [])
        if len(shown) < EXAMPLES:
            shown.append(line)
        if not self.present:
            return
        if line.get("stage") == "truncated":
            self.before.add(sides(detail_of(line).get("before")))
            self.after.add(sides(detail_of(line).get("after")))
        else:
            self.left_out[str(line.get("source_id", "")).rsplit("#", 1)[0]][str(line.get("stage"))] += 1
        if line.get("stage") == "duplicate" and (sid := str(line.get("source_id"))) in wanted:
            self.details[sid] = line.get("detail")


@dataclass
class DuplicateSummary:
    """What the report reads of the duplicates file: how many, by reason, every cluster's size (kept + dropped, largest
    first) and the CLUSTERS largest clusters whole."""

    total: int
    reasons: Counter[str]
    sizes: np.ndarray
    largest: list[Cluster]

    def shown_ids(self) -> set[str]:
        """The source ids of the records dropped in the clusters shown."""
        return {str(d["source_id"]) for c in self.largest for d in c.dropped}


def _kept_ids(side: SideFiles, reasons: Counter[str]) -> pa.ChunkedArray:
    """Every duplicate's kept source id, as one string column; counts the reasons on the way."""
    chunks = []
    for batch in side.duplicate_batches():
        reasons.update(str(d.get("reason")) for d in batch)
        chunks.append(pa.array([str(d["kept_source_id"]) for d in batch], pa.string()))
    return pa.chunked_array(chunks, pa.string())


def duplicate_summary(side: SideFiles) -> DuplicateSummary:
    """Cluster sizes from a compact column of kept ids, then a second pass for the largest clusters' lines."""
    reasons: Counter[str] = Counter()
    kept = _kept_ids(side, reasons)
    grouped = pa.table({"kept": kept}).group_by("kept").aggregate([("kept", "count")])
    order = pc.sort_indices(grouped, [("kept_count", "descending"), ("kept", "ascending")])
    grouped = grouped.take(order)
    sizes = grouped.column("kept_count").to_numpy().astype(np.int64) + 1
    top = grouped.column("kept").slice(0, CLUSTERS).to_pylist()
    members: dict[str, list[dict[str, Any]]] = {k: [] for k in top}
    for batch in side.duplicate_batches() if top else ():
        for d in batch:
            if (k := str(d["kept_source_id"])) in members:
                members[k].append(d)
    return DuplicateSummary(len(kept), reasons, sizes, [Cluster(k, members[k]) for k in top])


def _as_audit(batches: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Duplicates-file lines as the audit lines a package without audit.jsonl stands in with."""
    for batch in batches:
        yield [{"source_id": d["source_id"], "stage": "duplicate", "reason": d["reason"], "detail": d} for d in batch]


def audit_summary(side: SideFiles, wanted: set[str]) -> AuditSummary:
    """One pass over audit.jsonl (or, without one, the duplicates file, which still names every duplicate); keeps the
    detail of the duplicates in `wanted`."""
    summary = AuditSummary(present=side.audit is not None)
    batches = side.audit_batches() if summary.present else _as_audit(side.duplicate_batches())
    for batch in batches:
        for line in batch:
            summary.add(line, wanted)
    return summary
