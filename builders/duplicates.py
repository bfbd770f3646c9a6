"""duplicates.jsonl: one line per record dedup removed, naming the record its cluster kept, so a reader can check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsc.compiler.pipeline import Compiled

JSON = json.JSONEncoder(ensure_ascii=False)
"""What `json.dumps(..., ensure_ascii=False)` uses, made once: dumps builds a new encoder for every line."""

FILE = "duplicates.jsonl"


def write_duplicates(stage: Path, compiled: Compiled) -> None:
    """Write the package's duplicates file (nothing when the spec has no `dedup:` section)."""
    if compiled.duplicates is None:
        return
    records = compiled.duplicates.records
    assert records is not None, "deduplicate writes the records"
    with (stage / FILE).open("w", encoding="utf-8") as fh:
        for chunk in records.chunks():
            for batch in chunk.to_batches(max_chunksize=8192):
                fh.writelines(JSON.encode(record) + "\n" for record in batch.to_pylist())


def dedup_manifest(compiled: Compiled) -> dict[str, Any] | None:
    """The manifest's `dedup` entry: the resolved settings (hashing, seed, num_perm, datasketch version) and counts."""
    dups = compiled.duplicates
    if dups is None:
        return None
    return {**dups.settings, "counts": dups.counts, "file": FILE, "records": dups.records.rows if dups.records is not None else 0}
