"""A package's content as the report and the diff read it: manifest facts, split tables, duplicates, audit.

The same view comes from a package folder on disk (`dsc report`, `dsc diff`) or from a build being written (the
report writer), so a report regenerated later is byte-identical to the one the build wrote. The side files
(duplicates.jsonl, audit.jsonl) can hold a line per record read, so the view names them and readers take them a batch
of lines at a time, never whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsc.builders.verify import read_package
from dsc.compiler.audit import json_texts

COLUMNS = ["input_ids", "labels", "prompt", "response", "source_id"]
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
class PackageView:
    """What a package holds: its manifest (or the build's equivalent), a table per split, and its side files."""

    manifest: dict[str, Any]
    splits: dict[str, pa.Table]
    side: SideFiles

    @property
    def resolved(self) -> dict[str, Any]:
        """The resolved spec the package was built from."""
        return self.manifest.get("spec", {}).get("resolved", {})


def read_splits(folder: Path, manifest: dict[str, Any], columns: list[str] | None = None) -> dict[str, pa.Table]:
    """Each split's shards (as the manifest lists them) read into one table, splits in the manifest's order."""
    shards: dict[str, list[str]] = {name: [] for name in manifest.get("counts", {}).get("kept", {})}
    for rel in sorted(manifest.get("files", {})):
        if match := _SHARD.match(rel):
            shards.setdefault(match["split"], []).append(rel)
    return {
        name: pa.concat_tables([pq.read_table(folder / rel, columns=columns or COLUMNS) for rel in rels])
        for name, rels in shards.items()
        if rels
    }


def read_view(folder: str | Path, columns: list[str] | None = None) -> PackageView:
    """A package folder's view, after checking its data files against the manifest (`verify.read_package`)."""
    folder = Path(folder)
    manifest = read_package(folder)
    return PackageView(manifest=manifest, splits=read_splits(folder, manifest, columns), side=SideFiles.of(folder, manifest))


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
