"""audit.jsonl: one line per record that did not go into the package as it came (invalid, dropped, truncated,
duplicate), with its source location, the reason and the facts behind it, sorted by source and row."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsc.builders.outputs import OutputError
from dsc.compiler.audit import counts, records
from dsc.compiler.errors import Location, Problem
from dsc.compiler.pipeline import Compiled

JSON = json.JSONEncoder(ensure_ascii=False)
"""What `json.dumps(..., ensure_ascii=False)` uses, made once: dumps builds a new encoder for every line."""

FILE = "audit.jsonl"


def write_lines(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    """Audit lines as JSON lines (also what `dsc validate --audit FILE` writes)."""
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(JSON.encode(line) + "\n")


def _is_audit(path: Path) -> bool:
    """Whether an existing file is one dsc wrote: empty, or JSON lines that are all audit lines."""
    try:
        with path.open(encoding="utf-8") as fh:
            for text in fh:
                line = json.loads(text)
                if not (isinstance(line, dict) and {"source_id", "stage", "reason"} <= set(line)):
                    return False
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def write_audit_file(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    """Write audit lines to `path` whole or not at all (`dsc validate --audit FILE`); a file already there is replaced
    only when it is an audit dsc wrote (`OutputError` otherwise, nothing written)."""
    if path.exists() and not (path.is_file() and _is_audit(path)):
        raise OutputError(Problem("is not an audit file dsc wrote; refusing to replace it: choose another path", Location(str(path))))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_lines(partial, lines)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_audit(stage: Path, compiled: Compiled) -> None:
    """Write the package's audit file: always, empty when every record went in untouched."""
    write_lines(stage / FILE, records(compiled.audit, compiled.spec.path.parent))


def audit_manifest(compiled: Compiled) -> dict[str, Any]:
    """The manifest's `audit` entry: the file and how many of its lines each stage has."""
    by_stage = counts(compiled.audit)
    return {"file": FILE, "records": sum(by_stage.values()), "stages": by_stage}
