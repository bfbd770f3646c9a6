"""Running passes over Arrow data: batched, in memory, in one process or in `datasets.map` worker processes.

This is the one place that knows about the engine; passes only see batches (dict of column lists). Both ways feed the
same adapter (`_on_arrow`): Arrow batch in, Python lists to the pass, Arrow out in the declared schema.

- One process: a plain loop over the table's record batches whose outputs are chained, not copied. (`datasets.map`
  in memory writes into one growing buffer that peaks at about twice the output.)
- Several (`--num-proc N`): `datasets.map(num_proc=N)` forks workers over shards, once each worker gets at least
  `ROWS_PER_WORKER` rows: starting workers and moving their shards costs about as much as a core spends on that many
  records, so fewer run in one process, which is faster.

Between phases the engine counts the drop reasons and filters the dropped rows with Arrow compute.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable
from dsc.compiler.batch import DROP, ERROR, Pass
from tqdm.auto import tqdm

ROWS_PER_WORKER = 10_000
"""The default; DSC_ROWS_PER_WORKER sets another (tests set 1 to run workers on small data)."""


def _rows_per_worker() -> int:
    return int(os.environ.get("DSC_ROWS_PER_WORKER", ROWS_PER_WORKER))


def from_table(table: pa.Table) -> datasets.Dataset:
    """Wrap an Arrow table as an in-memory Dataset (no cache files: every build starts from its inputs).

    The fingerprint is given, not computed: datasets would otherwise hash the whole table (a full serialized copy)."""
    return datasets.Dataset(InMemoryTable(table), fingerprint=uuid.uuid4().hex)


def _on_arrow(fn: Pass, schema: pa.Schema, remove: set[str]) -> Callable[[pa.Table], pa.Table]:
    """Adapt a pass to Arrow batches.

    Input columns the pass does not replace are carried over as Arrow, untouched; new columns are converted with their
    declared types (or taken as built, like token lists): far cheaper than type inference over Python objects. A
    declared column no pass produced (a `_detail` nobody filled) is all null."""

    def run(table: pa.Table) -> pa.Table:
        out = fn(table.to_pydict())
        columns = {name: table.column(name) for name in table.column_names if name not in remove}
        for name, column in out.items():
            columns[name] = column if isinstance(column, pa.Array) else pa.array(column, type=schema.field(name).type)
        arrays = [columns[f.name] if f.name in columns else pa.nulls(len(table), f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

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
    """Run one (possibly chained) pass over every batch of `ds`; `features` declares the result's columns."""
    adapter = _on_arrow(fn, features.arrow_schema, set(remove_columns or ()))
    if num_proc and num_proc > 1 and len(ds) >= num_proc * _rows_per_worker():
        result = ds.with_format("arrow").map(
            adapter,
            batched=True,
            batch_size=batch_size,
            num_proc=num_proc,
            features=features,
            keep_in_memory=True,
            load_from_cache_file=False,
            new_fingerprint=uuid.uuid4().hex,  # nothing is cached between builds: changed data is never served stale
            desc=desc,
        )
        return result.with_format(None)
    table = ds.data.table
    parts = []
    with tqdm(total=len(table), desc=desc, unit=" examples", disable=not datasets.is_progress_bar_enabled()) as bar:
        for batch in table.to_batches(max_chunksize=batch_size):
            parts.append(adapter(pa.Table.from_batches([batch])))
            bar.update(batch.num_rows)
    out = pa.concat_tables(parts) if parts else features.arrow_schema.empty_table()
    return from_table(out)


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


def kept_table(table: pa.Table, drop_columns: list[str]) -> pa.Table:
    """The rows no pass dropped (no copy when none was), without the given bookkeeping columns."""
    if table.column(DROP).null_count != len(table):
        table = table.filter(pc.is_null(table.column(DROP)))
    return table.drop_columns([c for c in drop_columns if c in table.column_names])


def kept(ds: datasets.Dataset, drop_columns: list[str]) -> datasets.Dataset:
    """`kept_table` as a Dataset."""
    return from_table(kept_table(ds.data.table, drop_columns))
