"""The manifest: what went into a package and what came out, as JSON a person or a program can audit."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from typing import Any

from dsc.builders.audit import audit_manifest
from dsc.builders.duplicates import dedup_manifest
from dsc.compiler.pipeline import Compiled

TRACKED_PACKAGES = ("dsc", "datasets", "pyarrow", "tokenizers", "jinja2", "jsonschema", "datasketch", "xxhash")


def versions() -> dict[str, str]:
    """Versions of Python and of every package that shapes the output."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_manifest(compiled: Compiled, files: dict[str, dict[str, Any]], fingerprint: str) -> dict[str, Any]:
    """Everything the manifest records, given the written data files and the package fingerprint."""
    spec = compiled.spec
    return {
        "format": "dsc-package/1",
        "name": spec.name,
        "fingerprint": fingerprint,
        "dsc_version": versions().get("dsc", "unknown"),
        "versions": versions(),
        "spec": {
            "path": str(spec.path),
            "sha256": hashlib.sha256(spec.path.read_bytes()).hexdigest(),
            "resolved": spec.resolved,
        },
        "inputs": compiled.inputs,
        "templates": [
            {"key": t.key, "file": str(t.file) if t.file else None, "sha256": _sha256(t.text)} for t in spec.templates
        ],
        "tokenizer": compiled.tokenizer.identity(),
        "counts": compiled.counts,
        "dedup": dedup_manifest(compiled),
        "audit": audit_manifest(compiled),
        "tokens": compiled.tokens,
        "files": files,
    }
