"""A package's content as the report and the diff read it: manifest facts, split tables, duplicates, audit.

The same view comes from a package folder on disk (`dsc report`, `dsc diff`) or from a build being written (the
report writer), so a report regenerated later is byte-identical to the one the build wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsc.builders.verify import read_package

AUDIT_FILE = "audit.jsonl"
COLUMNS = ["input_ids", "labels", "prompt", "response", "source_id"]
_SHARD = re.compile(r"^data/(?P<split>.+)-\d{5}-of-\d{5}\.parquet$")


@dataclass
class PackageView:
    """What a package holds: its manifest (or the build's equivalent), a table per split, duplicates and audit lines."""

    manifest: dict[str, Any]
    splits: dict[str, pa.Table]
    duplicates: list[dict[str, Any]]
    audit: list[dict[str, Any]] | None

    @property
    def resolved(self) -> dict[str, Any]:
        """The resolved spec the package was built from."""
        return self.manifest.get("spec", {}).get("resolved", {})


def _json_lines(path: Path) -> list[dict[str, Any]] | None:
    """The file's non-blank lines, parsed as one JSON array (one decoder call, not one per line); a file that does not
    parse that way is parsed line by line, so a bad line fails as it would alone."""
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    try:
        parsed = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(lines):
        parsed = [json.loads(line) for line in lines]
    return parsed


def read_side_files(folder: Path, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The duplicates file the manifest names (none without dedup) and audit.jsonl (None when the package has none)."""
    dedup = manifest.get("dedup") or {}
    duplicates = _json_lines(folder / dedup["file"]) if dedup.get("file") else None
    return duplicates or [], _json_lines(folder / AUDIT_FILE)


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
    duplicates, audit = read_side_files(folder, manifest)
    return PackageView(manifest=manifest, splits=read_splits(folder, manifest, columns), duplicates=duplicates, audit=audit)


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
