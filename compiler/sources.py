"""Reading sources: every record becomes one row of raw JSON text plus where it came from.

Records stay raw here (`_record`) so that a malformed one cannot stop the read: the validate pass parses and checks
each record and reports it by file and line. Rows are numbered per source; `_line` is the 1-based line in the file
where one is known (JSON lines, JSON arrays, CSV).

A record the reader itself cannot make into JSON text (a CSV row with the wrong number of fields, bytes that are not
UTF-8, JSON nested too deeply to parse) still becomes a row: its `_record` is `unreadable(reason, message)`, which the
validate pass reports at the record's line like any other invalid record (skippable under `on_invalid: skip`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
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
CHUNK = 8192
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


@dataclass
class ReadResult:
    """The raw records of every source, and what went in (file hashes, counts)."""

    table: pa.Table
    inputs: list[dict[str, Any]] = field(default_factory=list)


class _Rows:
    """Raw rows gathered into Arrow record batches of CHUNK rows, so a large file never sits in Python twice."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.source = 0
        self._done = 0
        self._pending: tuple[list[str], list[int], list[int | None], list[bytes]] = ([], [], [], [])

    def add(self, file: str, row: int, line: int | None, record: bytes) -> None:
        files, rows, lines, records = self._pending
        files.append(file)
        rows.append(row)
        lines.append(line)
        records.append(record)
        if len(records) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        files, rows, lines, records = self._pending
        if not records:
            return
        columns = [pa.array([self.source] * len(records), pa.int32()), pa.array(files, pa.string())]
        columns += [pa.array(rows, pa.int64()), pa.array(lines, pa.int64()), pa.array(records, pa.large_binary())]
        self.batches.append(pa.RecordBatch.from_arrays(columns, schema=RAW_SCHEMA))
        self._done += len(records)
        self._pending = ([], [], [], [])

    def __len__(self) -> int:
        return self._done + len(self._pending[3])


def _json_array_items(text: str, name: str) -> Iterator[tuple[int, str]]:
    """(line, raw text) of each element of a top-level JSON array, without building Python objects twice."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0
    n = len(text)
    while i < n and text[i] in ws:
        i += 1
    if i >= n or text[i] != "[":
        raise RecordError(Problem("a .json source must hold a JSON array of records (use .jsonl for JSON lines)", Location(name, 1)))
    i += 1
    line = 1 + text.count("\n", 0, i)
    pos = i
    while True:
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] == "]":
            return
        line += text.count("\n", pos, i)
        pos = i
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise RecordError(Problem(f"invalid JSON: {exc.msg}", Location(name, exc.lineno))) from None
        except RecursionError:
            end = _value_end(text, i, name)  # the validate pass reports this record as nested too deeply
        yield line, text[i:end]
        i = end
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] == "]":
            return
        else:
            at = 1 + text.count("\n", 0, min(i, n))
            raise RecordError(Problem("invalid JSON: expected ',' or ']' between records", Location(name, at)))


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _value_end(text: str, start: int, name: str) -> int:
    """Where the JSON array or object starting at `start` ends, by counting brackets outside strings (for values too
    deeply nested for the JSON decoder to parse)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text, start):
        mark = token.group()
        if mark in "[{":
            depth += 1
        elif mark in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    line = 1 + text.count("\n", 0, start)
    raise RecordError(Problem("invalid JSON: an unclosed array or object", Location(name, line)))


def _dump(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


def _read_file(path: Path, fmt: str, rows: _Rows, limit: int | None) -> str:
    """Append the records of one file to `rows`; return the file's sha256."""
    name = str(path)
    digest = hashlib.sha256()
    room = None if limit is None else max(limit - len(rows), 0)
    if fmt == "jsonl":
        # Line by line from the file: the validate pass parses (and reports) each line; here they stay bytes.
        k = 0
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                digest.update(raw)
                if (room is None or k < room) and raw.strip():
                    rows.add(name, k, number, raw)
                    k += 1
        return digest.hexdigest()
    if fmt == "json":
        data = path.read_bytes()
        digest.update(data)
        # Bytes that are not UTF-8 survive as surrogate escapes and go back out as the same bytes: the validate pass
        # reports the one record that holds them.
        text = data.decode("utf-8-sig", errors="surrogateescape")
        del data
        for k, (line, raw) in enumerate(_json_array_items(text, name)):
            if room is not None and k >= room:
                break
            rows.add(name, k, line, raw.encode("utf-8", errors="surrogateescape"))
        return digest.hexdigest()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if fmt == "csv":
        _read_csv(path, rows, room)
        return digest.hexdigest()
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordError(Problem(f"cannot read Parquet: {exc}", Location(name))) from None
    _append_table(table, name, rows, room)
    return digest.hexdigest()


def _csv_record(header: list[str], row: list[str]) -> bytes:
    if len(row) != len(header):
        return unreadable("CSV field count", f"has {len(row)} field(s); the header has {len(header)}")
    try:
        return _dump(dict(zip(header, row, strict=True)))
    except UnicodeEncodeError:  # a surrogate escape: bytes that were not UTF-8
        return unreadable("not UTF-8", "not UTF-8 text")


def _read_csv(path: Path, rows: _Rows, room: int | None) -> None:
    """CSV rows as records keyed by the header; a row the csv module cannot read, with more or fewer fields than
    the header, or with bytes that are not UTF-8 becomes an unreadable record at its line (not cut, padded or fatal)."""
    name = str(path)
    csv.field_size_limit(CSV_FIELD_CHARS)
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        k = 0
        while room is None or k < room:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if header is None:
                    raise RecordError(Problem(f"cannot read the CSV header: {exc}", Location(name, reader.line_num))) from None
                rows.add(name, k, reader.line_num, unreadable("CSV row unreadable", f"CSV: {exc}"))
                k += 1
                continue
            if header is None:
                header = row
                if any("\udc80" <= c <= "\udcff" for c in "".join(row)):
                    raise RecordError(Problem("the CSV header is not UTF-8 text", Location(name, reader.line_num)))
                continue
            if row:  # a blank line is no record (as csv.DictReader has it)
                rows.add(name, k, reader.line_num, _csv_record(header, row))
                k += 1


def _append_table(table: pa.Table, name: str, rows: _Rows, room: int | None) -> None:
    k = 0
    for batch in table.to_batches(max_chunksize=4096):
        for rec in batch.to_pylist():
            if room is not None and k >= room:
                return
            rows.add(name, k, None, _dump(rec))
            k += 1


def _read_hub(src: SourceSpec, rows: _Rows, limit: int | None, spec: Spec) -> dict[str, Any]:
    import datasets

    split = src.split
    room = None if limit is None else max(limit - len(rows), 0)
    if room is not None:
        split = f"{split}[:{room}]"
    try:
        ds = datasets.load_dataset(src.hub, src.config, split=split, revision=src.revision)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is the user's source, reported at its line
        raise SpecError(
            Problem(f"sources.{src.index}.hub: cannot load '{src.hub}': {exc}", Location(str(spec.path), src.line))
        ) from None
    _append_table(ds.data.table, f"hub:{src.hub}", rows, room)
    return {"hub": src.hub, "config": src.config, "split": src.split, "revision": src.revision, "fingerprint": ds._fingerprint}


def read_sources(spec: Spec, limit: int | None = None) -> ReadResult:
    """Read every source of the spec (up to `limit` records in all) into one raw Arrow table."""
    rows = _Rows()
    inputs: list[dict[str, Any]] = []
    for src in spec.sources:
        if limit is not None and len(rows) >= limit:
            break
        rows.flush()
        rows.source = src.index
        before = len(rows)
        if src.kind == "hub":
            inputs.append({**_read_hub(src, rows, limit, spec), "records": len(rows) - before})
        else:
            for path in src.files:
                start = len(rows)
                fmt = src.format or FILE_FORMATS[path.suffix.lower()]
                sha = _read_file(path, fmt, rows, limit)
                inputs.append({"path": str(path), "format": fmt, "sha256": sha, "records": len(rows) - start})
    rows.flush()
    return ReadResult(table=pa.Table.from_batches(rows.batches, schema=RAW_SCHEMA), inputs=inputs)
