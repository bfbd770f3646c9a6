"""Spill files: a phase's output kept on disk as Arrow IPC streams, so memory holds one chunk at a time.

A `Workspace` is a private temporary folder for one build (`DSC_SPILL_DIR` picks where; the system's temp folder by
default), removed when the build is done with it. A spill is written chunk by chunk, read back chunk by chunk (plain
reads: the pages are not kept by this process), or opened whole as a memory-mapped `datasets.Dataset` for readers that
want random access (the operating system pages it in and out as needed, so it never has to fit in memory).
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow as pa

SPILL_DIR = "DSC_SPILL_DIR"


class Workspace:
    """A build's temporary folder; `close()` (or garbage collection, or exit) removes it."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="dsc-spill-", dir=os.environ.get(SPILL_DIR) or None)
        self.path = Path(self._dir.name)
        self._count = 0

    def spill(self, name: str, schema: pa.Schema) -> Spill:
        """A new, empty spill file in this workspace."""
        self._count += 1
        return Spill(self.path / f"{self._count:03d}-{name}.arrow", schema, self)

    def close(self) -> None:
        self._dir.cleanup()


class Spill:
    """One Arrow IPC stream on disk: `write` chunks, then `close`, then read it as chunks or as a Dataset."""

    def __init__(self, path: Path, schema: pa.Schema, workspace: Workspace) -> None:
        self.path = path
        self._workspace = workspace  # the folder lives as long as any spill in it
        self._map: mmap.mmap | None = None
        self.schema = schema
        self.rows = 0
        self._sink = pa.OSFile(str(path), "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self._sink, schema)

    def write(self, chunk: pa.Table) -> None:
        assert self._writer is not None, "spill already closed"
        if len(chunk):
            self._writer.write_table(chunk.select(self.schema.names).cast(self.schema))
            self.rows += len(chunk)

    def close(self) -> Spill:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None
        return self

    def chunks(self) -> Iterator[pa.Table]:
        """The spill's chunks as written, each read into memory on its own."""
        self.close()
        with pa.OSFile(str(self.path)) as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def dataset(self) -> datasets.Dataset:
        """The whole spill as a memory-mapped Dataset (zero copy; pages load on use)."""
        self.close()
        return datasets.Dataset.from_file(str(self.path))

    def table(self) -> pa.Table:
        """The whole spill as a memory-mapped Arrow table (zero copy). Pages its readers touch stay in this process
        until `release_pages`."""
        self.close()
        with self.path.open("rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return pa.ipc.open_stream(pa.BufferReader(pa.py_buffer(self._map))).read_all()

    def release_pages(self) -> None:
        """Hand the pages read through `table` back to the page cache (they are read again if touched again), so a
        reader that walks the table a slice at a time holds a slice, not the file."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
