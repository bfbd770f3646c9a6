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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import datasets

SPILL_DIR = "DSC_SPILL_DIR"


class Workspace:
    """A build's temporary folder; `close()` (or garbage collection, or exit) closes the row and text files it made
    and removes it."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="dsc-spill-", dir=os.environ.get(SPILL_DIR) or None)
        self.path = Path(self._dir.name)
        self._count = 0
        self._files: list[_WrittenThenRead] = []

    def spill(self, name: str, schema: pa.Schema) -> Spill:
        """A new, empty spill file in this workspace."""
        self._count += 1
        return Spill(self.path / f"{self._count:03d}-{name}.arrow", schema, self)

    def rows(self, name: str, dtype: type, width: int) -> RowFile:
        """A new row file in this workspace (closed with it)."""
        made = RowFile(self.path / name, dtype, width)
        self._files.append(made)
        return made

    def texts(self, name: str) -> TextFile:
        """A new text file in this workspace (closed with it)."""
        made = TextFile(self.path / name)
        self._files.append(made)
        return made

    def close(self) -> None:
        for made in self._files:
            made.close()
        self._files.clear()
        self._dir.cleanup()


SLICE_ROWS = 65_536
"""Rows a reader that walks a whole spill takes at a time (`Spill.slices`)."""

GAP = 2048
"""Spans this close together are read in one read (the bytes between them are read and skipped)."""


def read_spans(fd: int, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of each span [starts[i], stops[i]) of a file, with plain reads, one per run of nearby spans: one
    buffer, and where each span begins in it.

    Plain reads, not a memory map: on Linux, reading one row through a map maps the whole page-cache folio around it
    (up to 2 MiB) into the process, so random reads through a map hold most of the file."""
    if not len(starts):
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    begin, end = starts[order], stops[order]
    reach = np.maximum.accumulate(end)
    new = np.ones(len(begin), dtype=bool)
    new[1:] = begin[1:] > reach[:-1] + GAP
    first = np.nonzero(new)[0]
    run_start, run_stop = begin[first], np.maximum.reduceat(end, first)
    sizes = run_stop - run_start
    base = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    buf = np.empty(int(sizes.sum()), dtype=np.uint8)
    view = memoryview(buf)
    for at, where, size in zip(base.tolist(), run_start.tolist(), sizes.tolist(), strict=True):
        done = 0
        while done < size:
            got = os.preadv(fd, [view[at + done : at + size]], where + done)
            if got <= 0:
                raise OSError(f"{fd}: short read at {where + done}")
            done += got
    run = np.cumsum(new) - 1
    out = np.empty(len(begin), dtype=np.int64)
    out[order] = base[run] + (begin - run_start[run])
    return buf, out


class _WrittenThenRead:
    """A file written front to back, then read by position (`read_spans`): the first read ends the writing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sink: Any = path.open("wb")
        self._fd: int | None = None

    def _reader(self) -> int:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        """Release the file (writing or reading); it stays on disk until its workspace goes."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class RowFile(_WrittenThenRead):
    """A matrix on disk, written a block of rows at a time and read back by row index (`rows[i]`, `rows[i, cols]`,
    like a numpy array), with plain reads: a reader holds the rows it asked for, never the file."""

    def __init__(self, path: Path, dtype: type, width: int) -> None:
        super().__init__(path)
        self.dtype, self.width = np.dtype(dtype), width
        self._row_bytes = self.dtype.itemsize * width
        self.rows = 0

    def append(self, block: np.ndarray) -> None:
        assert self._sink is not None, "row file already closed"
        self._sink.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.width

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        rows = np.asarray(rows, dtype=np.int64)
        starts = rows * self._row_bytes
        buf, at = read_spans(self._reader(), starts, starts + self._row_bytes)
        matrix = buf.view(self.dtype).reshape(-1, self.width)
        return matrix[at // self._row_bytes][:, columns]


class TextFile(_WrittenThenRead):
    """Texts on disk, written a column at a time and read back by row index; where each text starts is kept in
    memory (8 bytes a row)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._ends: list[np.ndarray] = []
        self._size = 0
        self.rows = 0
        self._starts: np.ndarray | None = None

    def append(self, texts: pa.Array) -> None:
        """A string array's texts (a null is empty), straight from its buffers."""
        assert self._sink is not None, "text file already closed"
        texts = texts.fill_null("")
        offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)
        data = texts.buffers()[2]
        if data is not None:
            self._sink.write(memoryview(data)[offsets[0] : offsets[-1]])
        self._ends.append(self._size + offsets[1:] - offsets[0])
        self._size += int(offsets[-1] - offsets[0])
        self.rows += len(texts)

    def texts(self, rows: np.ndarray) -> list[str]:
        """The texts of `rows`, in that order."""
        if self._starts is None:
            self._starts = np.concatenate(([0], *self._ends)).astype(np.int64)
            self._ends = []
        rows = np.asarray(rows, dtype=np.int64)
        starts, stops = self._starts[rows], self._starts[rows + 1]
        buf, at = read_spans(self._reader(), starts, stops)
        data = buf.tobytes()
        return [data[a : a + n].decode("utf-8") for a, n in zip(at.tolist(), (stops - starts).tolist(), strict=True)]


def take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """Rows of a table in the order given, taken chunk by chunk: Arrow's own take on a chunked table first joins the
    chunks of every column into one (the whole of a memory-mapped spill, paged in and copied, for a few rows)."""
    batches = table.to_batches()
    offsets = np.cumsum([0, *(len(b) for b in batches)])
    order = np.argsort(rows, kind="stable")
    ordered = np.asarray(rows, dtype=np.int64)[order]
    which = np.searchsorted(offsets, ordered, side="right") - 1
    edges = np.searchsorted(which, np.arange(len(batches) + 1))
    parts = [
        batches[c].take(pa.array(ordered[edges[c] : edges[c + 1]] - offsets[c])) for c in range(len(batches)) if edges[c + 1] > edges[c]
    ]
    taken = pa.Table.from_batches(parts, schema=table.schema)
    if np.all(order[1:] > order[:-1]):  # asked in ascending order already
        return taken
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))
    return taken.combine_chunks().take(pa.array(back))


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

    @property
    def closed(self) -> bool:
        """No more writes: the spill was closed (reading closes it)."""
        return self._writer is None

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
        import datasets  # here only: a build does not need it (~0.8 s to import)

        self.close()
        return datasets.Dataset.from_file(str(self.path))

    def table(self) -> pa.Table:
        """The whole spill as a memory-mapped Arrow table (zero copy). Pages its readers touch stay in this process
        until `release_pages`."""
        self.close()
        if self._map is None:
            with self.path.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return pa.ipc.open_stream(pa.BufferReader(pa.py_buffer(self._map))).read_all()

    def walk(self, spans: Iterable[tuple[int, int]], columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each (start, length) slice of the spill in turn (of `columns`, or all), memory-mapped; the pages one slice
        touched are handed back before the next is read, so walking the whole spill holds a slice of it."""
        table = self.table()
        table = table.select(columns) if columns is not None else table
        try:
            for start, length in spans:
                yield table.slice(start, length)
                self.release_pages()
        finally:
            self.release_pages()

    def slices(self, columns: list[str] | None = None, rows: int = SLICE_ROWS) -> Iterator[pa.Table]:
        """The whole spill, `rows` at a time (`walk`)."""
        return self.walk(((start, rows) for start in range(0, self.rows, rows)), columns)

    def release_pages(self) -> None:
        """Hand the pages read through `table` back to the page cache (they are read again if touched again), so a
        reader that walks the table a slice at a time holds a slice, not the file."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
