"""audit.jsonl: one line per record that did not go into the package as it came (invalid, dropped, truncated,
duplicate), with its source location, the reason and the facts behind it, sorted by source and row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsc.compiler.audit import counts, records
from dsc.compiler.pipeline import Compiled

FILE = "audit.jsonl"


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    """Audit lines as JSON lines (also what `dsc validate --audit FILE` writes)."""
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def write_audit(stage: Path, compiled: Compiled) -> None:
    """Write the package's audit file: always, empty when every record went in untouched."""
    write_lines(stage / FILE, records(compiled.audit, compiled.spec.path.parent))


def audit_manifest(compiled: Compiled) -> dict[str, Any]:
    """The manifest's `audit` entry: the file and how many of its lines each stage has."""
    by_stage = counts(compiled.audit)
    return {"file": FILE, "records": sum(by_stage.values()), "stages": by_stage}
