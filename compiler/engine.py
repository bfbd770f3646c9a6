"""Running passes over Arrow data with `datasets.map`: batched, in memory, optionally in worker processes.

This is the one place that knows about the engine; passes only see batches. Between phases the engine filters the
rows passes marked with `_drop`, with Arrow compute, and hands the counts to the pipeline.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable

from compiler.batch import DROP, ERROR, Pass


def from_table(table: pa.Table) -> datasets.Dataset:
    """Wrap an Arrow table as an in-memory Dataset (no cache files: every build starts from its inputs)."""
    return datasets.Dataset(InMemoryTable(table))


def _on_arrow(fn: Pass, schema: pa.Schema, remove: set[str]) -> Callable[[pa.Table], pa.Table]:
    """Adapt a pass to Arrow batches: Arrow in, Python lists to the pass, Arrow out in the declared schema.

    Input columns the pass does not replace are carried over as Arrow, untouched; new columns are converted with their
    declared types (or taken as built, like token lists): far cheaper than datasets' inference over Python objects."""

    def run(table: pa.Table) -> pa.Table:
        out = fn(table.to_pydict())
        columns = {name: table.column(name) for name in table.column_names if name not in remove}
        for name, column in out.items():
            columns[name] = column if isinstance(column, pa.Array) else pa.array(column, type=schema.field(name).type)
        return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)

    return run


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
    result = ds.with_format("arrow").map(
        _on_arrow(fn, features.arrow_schema, set(remove_columns or ())),
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        features=features,
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=uuid.uuid4().hex,
        desc=desc,
    )
    return result.with_format(None)


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
