"""The local engine: chunks through a pass in this process, or in forked worker processes.

Workers are forked (they inherit the pass, nothing is pickled but chunks) and only once the input has a second chunk,
so a small build never pays for them. A `threaded` pass (tokenize: the fast tokenizer's batch encode already runs on
every core) stays in this process: forked copies of it only fight over the cores (measured: 1.5x the CPU time).
At most `2 x workers` chunks are in flight, and results come back in input order, so the output is the same whatever
the number of workers and memory stays bounded by the chunk size.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

import numpy as np
import pyarrow as pa
from dsc.compiler.batch import Pass
from dsc.compiler.dedup.lsh import buckets
from dsc.compiler.engine import on_arrow
from dsc.compiler.engine.progress import progress

_adapter: Callable[[pa.Table], pa.Table] | None = None
"""The pass a forked worker runs (set before the fork, inherited)."""


def _install(adapter: Callable[[pa.Table], pa.Table]) -> None:
    global _adapter
    _adapter = adapter


def _run(chunk: pa.Table) -> pa.Table:
    assert _adapter is not None
    return _adapter(chunk)


class LocalEngine:
    """Passes in this process, or in `workers` forked processes."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def map(
        self, chunks: Iterable[pa.Table], fn: Pass, schema: pa.Schema, remove: frozenset[str], desc: str, *, threaded: bool = False
    ) -> Iterator[pa.Table]:
        adapter = on_arrow(fn, schema, remove)
        with progress(desc) as bar:
            for out in self._ordered(iter(chunks), adapter, 1 if threaded else self.workers):
                bar.update(len(out))
                yield out

    def _ordered(self, chunks: Iterator[pa.Table], adapter: Callable[[pa.Table], pa.Table], workers: int) -> Iterator[pa.Table]:
        first = next(chunks, None)
        if first is None:
            return
        second = next(chunks, None)
        if second is None or workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
            yield adapter(first)
            if second is not None:
                yield from map(adapter, chain([second], chunks))
            return
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_install, initargs=(adapter,)) as pool:
            pending: deque = deque()
            for chunk in chain([first, second], chunks):
                pending.append(pool.apply_async(_run, (chunk,)))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()

    def bucket_pairs(self, keys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return buckets(keys, members)

    def close(self) -> None:
        """Nothing to release: a pool lives only as long as one `map`."""
