"""The Ray engine: passes through Ray Data's `map_batches`, dedup's bucket step as a Ray Data group-by.

The driver reads the sources, feeds the chunks to Ray a window at a time (a few chunks per worker, so memory stays
bounded by the chunk size as in the local engine) and takes the results back in input order, one table per input
chunk: the package is byte for byte the local engine's. Workers run the passes (cloudpickled closures: `dsc` must be
importable on them); the driver keeps the global steps' columns and writes the package.

Ray connects to `DSC_RAY_ADDRESS` or `RAY_ADDRESS` when set, to an instance this process already started otherwise,
or starts a local one, which `close` shuts down again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
from dsc.compiler.batch import Pass
from dsc.compiler.engine import on_arrow
from dsc.compiler.engine.progress import progress
from dsc.compiler.errors import DscError

CHUNKS_PER_WORKER = 2
"""Chunks in flight per worker: enough to keep every worker busy, few enough to bound memory."""


def _import_ray() -> ModuleType:
    """Ray, or a one-line error that says how to get it (the CLI prints a DscError without a traceback)."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra, not just the core)
    except ImportError as exc:
        raise DscError(f"--engine ray: Ray Data is not installed ({exc}); pip install 'dsc[ray]'") from exc
    return ray


def _connect(ray: ModuleType, workers: int | None) -> bool:
    """Join the cluster the environment names, or a running instance, or start a local one; True if started here."""
    if ray.is_initialized():
        return False
    address = os.environ.get("DSC_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None
    local = {} if address else {"num_cpus": workers, "include_dashboard": False}
    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **local)
    return True


def _quiet_data() -> None:
    """Results back in input order, a sort-based shuffle (it starts no actors, unlike the hash shuffle, which takes
    seconds to start on a small machine), and no Ray Data bars or plan logs: dsc shows its own records counter."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    context.enable_progress_bars = False


_loaded: dict[str, Callable[[pa.Table], pa.Table]] = {}
"""On a worker: the pass of the current map, by its object id (one at a time: the pipeline runs one map at a time)."""


class _Shipped:
    """A pass put in the object store once per map: each worker deserializes it once and keeps it for the map's later
    windows, where a pass handed to `map_batches` itself would be unpickled by every task (a tokenizer takes ~2 s)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __call__(self, table: pa.Table) -> pa.Table:
        key = self.ref.hex()
        if key not in _loaded:
            import ray

            _loaded.clear()
            _loaded[key] = ray.get(self.ref)
        return _loaded[key](table)


def _pairs_of_group(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One bucket's pairs: (its smallest member, each other member)."""
    members = np.sort(group["member"]).astype(np.int64)
    return {"head": np.full(len(members) - 1, members[0], dtype=np.int64), "other": members[1:]}


class RayEngine:
    """Passes on Ray workers, in order; equal keys grouped by a Ray Data group-by."""

    name = "ray"

    def __init__(self, workers: int | None = None) -> None:
        self.ray = _import_ray()
        self.started = _connect(self.ray, workers)
        _quiet_data()
        self.workers = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def map(
        self, chunks: Iterable[pa.Table], fn: Pass, schema: pa.Schema, remove: frozenset[str], desc: str, *, threaded: bool = False
    ) -> Iterator[pa.Table]:
        """Every pass, `threaded` or not, runs on the workers: spreading work over machines is what Ray is for."""
        adapter = _Shipped(self.ray.put(on_arrow(fn, schema, remove)))
        stream = iter(chunks)
        with progress(desc) as bar:
            while window := list(islice(stream, CHUNKS_PER_WORKER * self.workers)):
                for out in self._window(window, adapter):
                    bar.update(len(out))
                    yield out

    def _window(self, window: list[pa.Table], adapter: Callable[[pa.Table], pa.Table]) -> list[pa.Table]:
        """One window through the workers, cut back into its input chunks (a pass keeps every row; Ray may split or
        merge blocks), so the stream downstream is the local engine's chunk for chunk."""
        mapped = self.ray.data.from_arrow(window).map_batches(adapter, batch_format="pyarrow", batch_size=None)
        table = pa.concat_tables(self.ray.get(mapped.to_arrow_refs()))
        out, start = [], 0
        for chunk in window:
            out.append(table.slice(start, len(chunk)).combine_chunks())
            start += len(chunk)
        return out

    def bucket_pairs(self, keys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(keys) < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rows = self.ray.data.from_arrow(pa.table({"key": keys, "member": members}))
        grouped = rows.groupby("key", num_partitions=self.workers).map_groups(_pairs_of_group, batch_format="numpy")
        parts = [part for part in self.ray.get(grouped.to_arrow_refs()) if len(part)]
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pairs = pa.concat_tables(parts)
        return pairs.column("head").to_numpy(), pairs.column("other").to_numpy()

    def close(self) -> None:
        """Shut down the Ray instance this engine started (never one it joined)."""
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False
