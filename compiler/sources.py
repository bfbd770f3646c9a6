"""Reading sources: every record becomes one row of raw JSON text plus where it came from.

Records stay raw here (`_record`) so that a malformed one cannot stop the read: the validate pass parses and checks
each record and reports it by file and line. Rows are numbered per source; `_line` is the 1-based line in the file
where one is known (JSON lines, JSON arrays, CSV).

A record the reader itself cannot make into JSON text (a CSV row with the wrong number of fields, bytes that are not
UTF-8, JSON nested too deeply to parse) still becomes a row: its `_record` is `unreadable(reason, message)`, which the
validate pass reports at the record's line like any other invalid record (skippable under `on_invalid: skip`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from dsc.compiler.errors import Location, Problem, RecordError, SpecError
from dsc.compiler.limits import CSV_FIELD_CHARS
from dsc.compiler.spec import FILE_FORMATS, SourceSpec, Spec

RAW_SCHEMA = pa.schema(
    [
        ("_source", pa.int32()),
        ("_file", pa.string()),
        ("_row", pa.int64()),
        ("_line", pa.int64()),
        ("_record", pa.large_binary()),
    ]
)
_UNREADABLE = b"\x00"  # no JSON text starts with a NUL byte


def unreadable(reason: str, message: str) -> bytes:
    """The `_record` of a row the reader could not turn into JSON text."""
    return _UNREADABLE + json.dumps([reason, message]).encode("utf-8")


def unreadable_reason(raw: bytes) -> tuple[str, str] | None:
    """(reason, message) of a row marked by `unreadable`, else None."""
    if raw[:1] != _UNREADABLE:
        return None
    reason, message = json.loads(raw[1:])
    return reason, message


class _Chunker:
    """Raw rows gathered into Arrow tables of `size` rows (one source per chunk), so a large file never sits in
    Python whole: the stream yields each chunk as it fills."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.source = 0
        self.count = 0
        self._pending: tuple[list[str], list[int], list[int | None], list[bytes]] = ([], [], [], [])

    def add(self, file: str, row: int, line: int | None, record: bytes) -> pa.Table | None:
        """Add one row; returns a full chunk when this row filled one."""
        files, rows, lines, records = self._pending
        files.append(file)
        rows.append(row)
        lines.append(line)
        records.append(record)
        self.count += 1
        return self.flush() if len(records) >= self.size else None

    def flush(self) -> pa.Table | None:
        """The rows gathered so far as a chunk (None when there are none)."""
        files, rows, lines, records = self._pending
        if not records:
            return None
        columns = [pa.array([self.source] * len(records), pa.int32()), pa.array(files, pa.string())]
        columns += [pa.array(rows, pa.int64()), pa.array(lines, pa.int64()), pa.array(records, pa.large_binary())]
        self._pending = ([], [], [], [])
        return pa.Table.from_arrays(columns, schema=RAW_SCHEMA)


BLOCK = 1 << 20
"""Bytes read at a time from a JSON array file."""


class _Text:
    """A JSON array file as text, read a block at a time: `text[pos:]` is what is not yet consumed, and `line` the
    1-based line at `pos`. Bytes that are not UTF-8 survive as surrogate escapes and go back out as the same bytes:
    the validate pass reports the one record that holds them."""

    def __init__(self, fh: Any, digest: Any) -> None:
        self._fh = fh
        self._digest = digest
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape")
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def more(self) -> bool:
        """Read another block (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        data = self._fh.read(max(BLOCK, len(self.text) - self.pos))
        self._digest.update(data)
        self.eof = not data
        self.text = self.text[self.pos :] + self._decoder.decode(data, final=self.eof)
        self.pos = 0
        return True

    def finish(self) -> None:
        """Read the rest of the file (after the array) into the digest: the hash is of the whole file."""
        for data in iter(lambda: self._fh.read(BLOCK), b""):
            self._digest.update(data)
        self.eof = True

    def skip_space(self) -> str:
        """Advance past whitespace; the next character ('' at the end of the file)."""
        while True:
            n = len(self.text)
            while self.pos < n and self.text[self.pos] in " \t\r\n":
                if self.text[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < n or not self.more():
                return self.text[self.pos : self.pos + 1]

    def advance(self, end: int) -> str:
        """Consume up to `end`; the consumed text."""
        raw = self.text[self.pos : end]
        self.line += raw.count("\n")
        self.pos = end
        return raw


def _json_array_items(fh: Any, digest: Any, name: str) -> Iterator[tuple[int, str]]:
    """(line, raw text) of each element of a top-level JSON array, reading the file a block at a time."""
    text = _Text(fh, digest)
    if text.skip_space() != "[":
        raise RecordError(Problem("a .json source must hold a JSON array of records (use .jsonl for JSON lines)", Location(name, 1)))
    text.advance(text.pos + 1)
    if text.skip_space() != "]":
        yield from _json_array_body(text, name)
    text.finish()


def _json_array_body(text: _Text, name: str) -> Iterator[tuple[int, str]]:
    """The elements of a JSON array whose `[` was consumed, up to its `]`."""
    decoder = json.JSONDecoder()
    while True:
        line = text.line
        end = _item_end(text, decoder, name)
        yield line, text.advance(end)
        mark = text.skip_space()
        if mark == ",":
            text.advance(text.pos + 1)
            if text.skip_space() == "]":
                return
        elif mark == "]":
            return
        else:
            raise RecordError(Problem("invalid JSON: expected ',' or ']' between records", Location(name, text.line)))


def _item_end(text: _Text, decoder: json.JSONDecoder, name: str) -> int:
    """Where the JSON value at `text.pos` ends, reading more of the file until it is whole (a value that ends at the
    end of what was read, like a number, may go on in the next block)."""
    while True:
        try:
            _, end = decoder.raw_decode(text.text, text.pos)
        except json.JSONDecodeError as exc:
            if text.more():
                continue
            line = text.line + text.text.count("\n", text.pos, exc.pos)
            raise RecordError(Problem(f"invalid JSON: {exc.msg}", Location(name, line))) from None
        except RecursionError:
            end = _value_end(text.text, text.pos)  # the validate pass reports this record as nested too deeply
            if end is None:
                if text.more():
                    continue
                raise RecordError(Problem("invalid JSON: an unclosed array or object", Location(name, text.line))) from None
        if _closed(text.text, end) or not text.more():
            return end


def _closed(text: str, end: int) -> bool:
    """Whether a value decoded up to `end` is surely whole: a ',' or ']' follows it in what was read. (A number cut
    by the end of a block decodes too: '-0.5' of '-0.5e10'.)"""
    rest = text[end : end + 64].lstrip(" \t\r\n")
    return rest[:1] in (",", "]") if rest else False


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _value_end(text: str, start: int) -> int | None:
    """Where the JSON array or object starting at `start` ends, by counting brackets outside strings (for values too
    deeply nested for the JSON decoder to parse); None when it does not end in `text`."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text, start):
        mark = token.group()
        if mark in "[{":
            depth += 1
        elif mark in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return None


def _dump(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


Records = Iterator[tuple[int | None, bytes]]
"""A file's records: (1-based line or None, raw JSON text)."""


def _file_records(path: Path, fmt: str, digest: Any) -> Records:
    """The records of one file, read as a stream; `digest` sees every byte of the file."""
    name = str(path)
    if fmt == "jsonl":
        # Line by line from the file: the validate pass parses (and reports) each line; here they stay bytes.
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                digest.update(raw)
                if raw.strip():
                    yield number, raw
        return
    if fmt == "json":
        with path.open("rb") as fh:
            for line, raw in _json_array_items(fh, digest, name):
                yield line, raw.encode("utf-8", errors="surrogateescape")
        return
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    if fmt == "csv":
        yield from _csv_records(path)
        return
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        yield from _table_records(batches)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordError(Problem(f"cannot read Parquet: {exc}", Location(name))) from None


def _csv_record(header: list[str], row: list[str]) -> bytes:
    if len(row) != len(header):
        return unreadable("CSV field count", f"has {len(row)} field(s); the header has {len(header)}")
    try:
        return _dump(dict(zip(header, row, strict=True)))
    except UnicodeEncodeError:  # a surrogate escape: bytes that were not UTF-8
        return unreadable("not UTF-8", "not UTF-8 text")


def _csv_records(path: Path) -> Records:
    """CSV rows as records keyed by the header; a row the csv module cannot read, with more or fewer fields than
    the header, or with bytes that are not UTF-8 becomes an unreadable record at its line (not cut, padded or fatal)."""
    name = str(path)
    csv.field_size_limit(CSV_FIELD_CHARS)
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if header is None:
                    raise RecordError(Problem(f"cannot read the CSV header: {exc}", Location(name, reader.line_num))) from None
                yield reader.line_num, unreadable("CSV row unreadable", f"CSV: {exc}")
                continue
            if header is None:
                header = row
                if any("\udc80" <= c <= "\udcff" for c in "".join(row)):
                    raise RecordError(Problem("the CSV header is not UTF-8 text", Location(name, reader.line_num)))
                continue
            if row:  # a blank line is no record (as csv.DictReader has it)
                yield reader.line_num, _csv_record(header, row)


def _table_records(batches: Iterable[pa.RecordBatch]) -> Records:
    for batch in batches:
        for rec in batch.to_pylist():
            yield None, _dump(rec)


def _hub_records(src: SourceSpec, room: int | None, spec: Spec, inputs: list[dict[str, Any]]) -> Records:
    import datasets

    split = src.split if room is None else f"{src.split}[:{room}]"
    try:
        ds = datasets.load_dataset(src.hub, src.config, split=split, revision=src.revision)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is the user's source, reported at its line
        raise SpecError(
            Problem(f"sources.{src.index}.hub: cannot load '{src.hub}': {exc}", Location(str(spec.path), src.line))
        ) from None
    inputs.append({"hub": src.hub, "config": src.config, "split": src.split, "revision": src.revision, "fingerprint": ds._fingerprint})
    yield from _table_records(ds.data.table.to_batches(max_chunksize=4096))


class SourceStream:
    """Every source of a spec (up to `limit` records in all) as a stream of raw chunks (RAW_SCHEMA), read as they are
    needed. `inputs` (file hashes, record counts) and `read` are complete once the stream is exhausted."""

    def __init__(self, spec: Spec, limit: int | None = None, chunk_rows: int = 8192) -> None:
        self.spec = spec
        self.limit = limit
        self.chunk_rows = chunk_rows
        self.inputs: list[dict[str, Any]] = []
        self.read = 0

    def __iter__(self) -> Iterator[pa.Table]:
        rows = _Chunker(self.chunk_rows)
        for src in self.spec.sources:
            if self.limit is not None and rows.count >= self.limit:
                break
            if (chunk := rows.flush()) is not None:
                yield chunk
            rows.source = src.index
            if src.kind == "hub":
                start = rows.count
                room = None if self.limit is None else self.limit - start
                yield from self._add(rows, f"hub:{src.hub}", _hub_records(src, room, self.spec, self.inputs))
                self.inputs[-1]["records"] = rows.count - start
                continue
            for path in src.files:
                start = rows.count
                fmt = src.format or FILE_FORMATS[path.suffix.lower()]
                digest = hashlib.sha256()
                records = _file_records(path, fmt, digest)
                yield from self._add(rows, str(path), records)
                if fmt in ("jsonl", "json"):  # past a limit, the rest of the file still counts towards its hash
                    for _ in records:
                        pass
                records.close()
                self.inputs.append({"path": str(path), "format": fmt, "sha256": digest.hexdigest(), "records": rows.count - start})
        if (chunk := rows.flush()) is not None:
            yield chunk
        self.read = rows.count

    def _add(self, rows: _Chunker, name: str, records: Records) -> Iterator[pa.Table]:
        """Feed one file's records into chunks, yielding each full chunk, up to the limit."""
        for k, (line, raw) in enumerate(records):
            if self.limit is not None and rows.count >= self.limit:
                return
            if (chunk := rows.add(name, k, line, raw)) is not None:
                yield chunk
