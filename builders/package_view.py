"""A package's content as the report and the diff read it: manifest facts, splits, duplicates, audit.

The same view comes from a package folder on disk (`dsc report`, `dsc diff`) or from a build being written (the
report writer), so a report regenerated later is byte-identical to the one the build wrote. The side files
(duplicates.jsonl, audit.jsonl) can hold a line per record read, so the view names them and readers take them a batch
of lines at a time, never whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsc.builders.verify import read_package
from dsc.compiler.audit import json_texts
from dsc.compiler.engine.spill import SLICE_ROWS

_SHARD = re.compile(r"^data/(?P<split>.+)-\d{5}-of-\d{5}\.parquet$")


AUDIT_FILE = "audit.jsonl"
BATCH_LINES = 8192


def json_batches(path: Path | None) -> Iterator[list[Any]]:
    """The file's non-blank lines, parsed BATCH_LINES at a time (one decoder call per batch, not one per line); a batch
    that does not parse that way is parsed line by line, so a bad line fails as it would alone. No file, no batches."""
    if path is None or not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        batch: list[str] = []
        for line in lines:
            if line.strip():
                batch.append(line.rstrip("\n"))
            if len(batch) == BATCH_LINES:
                yield json_texts(batch)
                batch = []
        if batch:
            yield json_texts(batch)


@dataclass
class SideFiles:
    """Where a package's duplicates file and audit.jsonl are (None: the package has none), read a batch at a time."""

    duplicates: Path | None
    audit: Path | None

    @classmethod
    def of(cls, folder: Path, manifest: dict[str, Any]) -> SideFiles:
        """The duplicates file the manifest names (none without dedup) and audit.jsonl, where they exist."""
        dedup = manifest.get("dedup") or {}
        duplicates = folder / dedup["file"] if dedup.get("file") else None
        audit = folder / AUDIT_FILE
        return cls(duplicates if duplicates and duplicates.is_file() else None, audit if audit.is_file() else None)

    def duplicate_batches(self) -> Iterator[list[dict[str, Any]]]:
        return json_batches(self.duplicates)

    def audit_batches(self) -> Iterator[list[dict[str, Any]]]:
        return json_batches(self.audit)


@dataclass
class Split:
    """One split's records, read a slice at a time: a split can be larger than memory, so its readers walk it (from the
    package's Parquet shards, or from the build's spill) and keep only what they reduce each slice to."""

    rows: int
    slices: Callable[[list[str]], Iterator[pa.Table]]
    """The split's rows of the named columns, in order, a slice at a time."""

    @classmethod
    def of_shards(cls, paths: list[Path]) -> Split:
        """A split stored as Parquet shards (in order), read a row group batch at a time."""

        def slices(columns: list[str]) -> Iterator[pa.Table]:
            for path in paths:
                shard = pq.ParquetFile(path)
                try:
                    for batch in shard.iter_batches(batch_size=SLICE_ROWS, columns=columns):
                        yield pa.Table.from_batches([batch])
                finally:
                    shard.close()

        return cls(rows=sum(pq.read_metadata(path).num_rows for path in paths), slices=slices)


@dataclass
class PackageView:
    """What a package holds: its manifest (or the build's equivalent), its splits, and its side files."""

    manifest: dict[str, Any]
    splits: dict[str, Split]
    side: SideFiles

    @property
    def resolved(self) -> dict[str, Any]:
        """The resolved spec the package was built from."""
        return self.manifest.get("spec", {}).get("resolved", {})


def read_splits(folder: Path, manifest: dict[str, Any]) -> dict[str, Split]:
    """Each split's shards, as the manifest lists them, splits in the manifest's order."""
    shards: dict[str, list[Path]] = {name: [] for name in manifest.get("counts", {}).get("kept", {})}
    for rel in sorted(manifest.get("files", {})):
        if match := _SHARD.match(rel):
            shards.setdefault(match["split"], []).append(folder / rel)
    return {name: Split.of_shards(paths) for name, paths in shards.items() if paths}


def read_view(folder: str | Path) -> PackageView:
    """A package folder's view, after checking its data files against the manifest (`verify.read_package`)."""
    folder = Path(folder)
    manifest = read_package(folder)
    return PackageView(manifest=manifest, splits=read_splits(folder, manifest), side=SideFiles.of(folder, manifest))


def source_names(source_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The source part of each `file#row` id (the file's name, or the Hub dataset's)."""
    return pc.replace_substring_regex(source_ids, pattern=r"#[0-9]+$", replacement="")


def source_rows(source_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The row part of each `file#row` id, as integers."""
    return pc.cast(pc.replace_substring_regex(source_ids, pattern=r"^.*#", replacement=""), pa.int64())


def input_name(entry: dict[str, Any]) -> str:
    """The name a manifest input goes by in source ids: a file's name, or the last part of a Hub id."""
    if "hub" in entry:
        return str(entry["hub"]).rsplit("/", 1)[-1]
    return Path(str(entry.get("path", ""))).name
