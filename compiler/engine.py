"""Running passes over Arrow data with `datasets.map`: batched, in memory, optionally in worker processes.

This is the one place that knows about the engine; passes only see batches. Between phases the engine filters the
rows passes marked with `_drop`, with Arrow compute, and hands the counts to the pipeline.
"""

from __future__ import annotations

import uuid
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable

from compiler.batch import DROP, ERROR, Pass


def from_table(table: pa.Table) -> datasets.Dataset:
    """Wrap an Arrow table as an in-memory Dataset (no cache files: every build starts from its inputs)."""
    return datasets.Dataset(InMemoryTable(table))


def apply(
    ds: datasets.Dataset,
    fn: Pass,
    *,
    desc: str,
    features: datasets.Features,
    remove_columns: list[str] | None = None,
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> datasets.Dataset:
    """Run one (possibly chained) pass over every batch of `ds`.

    The fingerprint is fresh on purpose: nothing is cached between builds, so changed data can never be served stale.
    """
    return ds.map(
        fn,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        features=features,
        remove_columns=remove_columns,
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=uuid.uuid4().hex,
        desc=desc,
    )


def reasons(ds: datasets.Dataset) -> Counter[str]:
    """How many rows each drop reason removed."""
    counts = pc.value_counts(ds.data.table.column(DROP).drop_null())
    return Counter({v["values"].as_py(): v["counts"].as_py() for v in counts})


def first_errors(ds: datasets.Dataset, limit: int) -> tuple[list[str], int]:
    """The first `limit` located error messages, and how many there are."""
    column = ds.data.table.column(ERROR)
    total = len(column) - column.null_count
    if not total:
        return [], 0
    found = column.drop_null().slice(0, limit).to_pylist()
    return found, total


def kept(ds: datasets.Dataset, drop_columns: list[str]) -> datasets.Dataset:
    """The rows no pass dropped, without the given bookkeeping columns."""
    table = ds.data.table
    table = table.filter(pc.is_null(table.column(DROP)))
    table = table.drop_columns([c for c in drop_columns if c in table.column_names])
    return from_table(table)
