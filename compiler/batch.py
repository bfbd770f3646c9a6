"""The shape every pass shares: a batch is a dict of equal-length column lists.

A pass never removes rows itself. It marks them: `_drop` holds the reason a row leaves the build (None keeps it),
`_error` the located message shown when that reason is fatal, and `_detail` a JSON text of facts for the audit (the
text a regex failed on, lengths before and after a cut). Rows already marked are skipped by later passes, and the
pipeline counts the reasons and filters the rows between phases. So counts are data, and the same passes run under
`datasets.map`, in worker processes, or under another engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dsc.compiler.errors import Location

Batch = dict[str, list[Any]]
Pass = Callable[[Batch], Batch]

DROP = "_drop"
ERROR = "_error"
DETAIL = "_detail"
BOOKKEEPING = ("_source", "_file", "_row", "_line")
"""Where each row came from: source index, file, row and line. Every phase carries these."""


def field_column(name: str) -> str:
    """The column that carries a record field between passes, kept apart from the columns the build itself makes
    (a field may well be called `prompt`, `response` or `labels`)."""
    return f"field.{name}"


def size(batch: Batch) -> int:
    """The number of rows in a batch."""
    return len(next(iter(batch.values()))) if batch else 0


def drops(batch: Batch) -> list[str | None]:
    """The batch's drop reasons (all None when no pass has dropped anything yet)."""
    return batch.get(DROP) or [None] * size(batch)


def location(batch: Batch, i: int, field: str | None = None) -> Location:
    """Where row `i` of a batch came from: file and line (or row), and optionally a field."""
    line = batch["_line"][i]
    return Location(
        file=batch["_file"][i],
        line=line,
        record=None if line is not None else str(batch["_row"][i]),
        field=field,
    )


def source_id(file: str, row: int) -> str:
    """A record's stable id in the package: its file's name and its 0-based row."""
    return f"{file.rsplit('/', 1)[-1]}#{row}"


def source_ids(files: pa.Array | pa.ChunkedArray, rows: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`source_id` of whole columns, in Arrow (no Python object per record)."""
    names = pc.replace_substring_regex(files, pattern=r"^.*/", replacement="")
    return pc.binary_join_element_wise(names, pc.cast(rows, pa.string()), "#")


def chain(*passes: Pass) -> Pass:
    """Run passes one after another on the same batch, as one pass (one Arrow round trip instead of several).

    Each pass sees the input columns and what earlier passes produced; the chain returns only what they produced."""

    def run(batch: Batch) -> Batch:
        view = dict(batch)
        out: Batch = {}
        for p in passes:
            produced = p(view)
            view.update(produced)
            out.update(produced)
        return out

    return run
