"""Where passes run: over a stream of Arrow chunks, in this process, in forked workers, or on Ray.

Passes only see batches (`dsc.compiler.batch`); an engine only sees chunks (Arrow tables) and a pass. Every engine
gives back the chunks in input order, so the package does not depend on which engine built it or how many workers it
had. The pipeline (`dsc.compiler.pipeline`) streams its phases through `Engine.map` and keeps between phases only what
a global step needs (`dsc.compiler.engine.spill` holds the rest on disk).

- `local` (the default): in-process, or with `workers > 1` in forked worker processes, at most a few chunks in
  flight, so memory stays bounded by the chunk size.
- `ray` (`pip install 'dsc[ray]'`): the same passes through Ray Data's `map_batches` on a local Ray instance or a
  cluster (`DSC_RAY_ADDRESS` / `RAY_ADDRESS`); dedup's bucket step is a Ray group-by of band keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
import pyarrow as pa
from dsc.compiler.batch import Pass
from dsc.compiler.environment import positive_int

ENGINES = ("local", "ray")
CHUNK_ROWS = 8192
"""Records per chunk; `DSC_CHUNK_ROWS` sets another (peak memory grows with it; tests set it low to run workers)."""


def chunk_rows() -> int:
    """Records per chunk of the stream."""
    return positive_int("DSC_CHUNK_ROWS", CHUNK_ROWS)


def cpu_count() -> int:
    """The cores this process may run on (what `--num-proc` defaults to)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Engine(Protocol):
    """Runs passes over chunks, in order, and groups keys for dedup's global step."""

    name: str

    def map(
        self, chunks: Iterable[pa.Table], fn: Pass, schema: pa.Schema, remove: frozenset[str], desc: str, *, threaded: bool = False
    ) -> Iterator[pa.Table]:
        """`fn` over every chunk (via `on_arrow`), yielding the results in input order. `threaded`: the pass already
        uses every core of the machine it runs on (a fast tokenizer's batch encode), so one machine runs it in one
        process."""
        ...

    def bucket_pairs(self, keys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For every group of equal `keys`: (its smallest member, each other member), as `dsc.compiler.dedup.lsh.buckets`."""
        ...

    def close(self) -> None:
        """Release workers (a no-op where there are none)."""
        ...


def on_arrow(fn: Pass, schema: pa.Schema, remove: frozenset[str]) -> Callable[[pa.Table], pa.Table]:
    """Adapt a pass to Arrow tables: columns the pass does not replace are carried over as Arrow, untouched; new
    columns are converted with their declared types (or taken as built, like token lists): far cheaper than type
    inference over Python objects. A declared column no pass produced (a `_detail` nobody filled) is all null."""

    def run(table: pa.Table) -> pa.Table:
        out = fn(table.to_pydict())
        columns = {name: table.column(name) for name in table.column_names if name not in remove}
        for name, column in out.items():
            columns[name] = column if isinstance(column, pa.Array) else pa.array(column, type=schema.field(name).type)
        arrays = [columns[f.name] if f.name in columns else pa.nulls(len(table), f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

    return run


def make_engine(name: str = "local", workers: int | None = None) -> Engine:
    """The engine a build runs on; `workers` None means every core (the local engine uses them only when the input
    spans more than one chunk)."""
    if name == "ray":
        from dsc.compiler.engine.ray import RayEngine

        return RayEngine(workers)
    from dsc.compiler.engine.local import LocalEngine

    return LocalEngine(cpu_count() if workers is None else workers)
