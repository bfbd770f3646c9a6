"""The manifest: what went into a package and what came out, as JSON a person or a program can audit.

It records no absolute local path: files are named relative to the spec's folder, dsc's own templates by name, the
tokenizer by name and sha256; hashes identify every input. Two builds of one spec and data are byte-identical
wherever they are written."""

from __future__ import annotations

import copy
import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from dsc.builders.audit import audit_manifest
from dsc.builders.duplicates import dedup_manifest
from dsc.compiler import resources
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


def portable(path: str | Path, base: Path) -> str:
    """A path as a package may record it: relative to the spec's folder (`base`), or `dsc:templates/<name>` for
    dsc's own templates, never absolute, so the package is the same bytes wherever dsc, the spec or the output live."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    builtin = resources.templates_dir()
    if path.parent == builtin:
        return f"dsc:templates/{path.name}"
    return Path(os.path.relpath(path, base)).as_posix()


def _portable_spec(resolved: dict[str, Any], base: Path) -> dict[str, Any]:
    """The resolved spec with every local path made portable and the output folder left out (where the package went
    is not what it is)."""
    out = copy.deepcopy(resolved)
    out.pop("output", None)
    for src in out.get("sources", []):
        if isinstance(src, dict) and isinstance(src.get("path"), str):
            src["path"] = portable(src["path"], base)
    for value in (out.get("templates") or {}).values():
        for template in (value, *(value.values() if isinstance(value, dict) else ())):
            if isinstance(template, dict) and isinstance(template.get("file"), str):
                template["file"] = portable(template["file"], base)
    tokenizer = out.get("tokenizer")
    if isinstance(tokenizer, dict) and isinstance(tokenizer.get("name"), str) and os.path.isabs(tokenizer["name"]):
        tokenizer["name"] = portable(tokenizer["name"], base)
    return out


def tokenizer_identity(compiled: Compiled) -> dict[str, Any]:
    """The tokenizer by name and hash (never its folder): a local folder's name is made portable."""
    identity = {k: v for k, v in compiled.tokenizer.identity().items() if k != "path"}
    if os.path.isabs(identity["name"]):
        identity["name"] = portable(identity["name"], compiled.spec.path.parent)
    return identity


def build_manifest(compiled: Compiled, files: dict[str, dict[str, Any]], fingerprint: str) -> dict[str, Any]:
    """Everything the manifest records, given the written data files and the package fingerprint."""
    spec = compiled.spec
    base = spec.path.parent
    inputs = [{**i, "path": portable(i["path"], base)} if "path" in i else i for i in compiled.inputs]
    return {
        "format": "dsc-package/1",
        "name": spec.name,
        "fingerprint": fingerprint,
        "dsc_version": versions().get("dsc", "unknown"),
        "versions": versions(),
        "spec": {
            "path": spec.path.name,
            "sha256": hashlib.sha256(spec.path.read_bytes()).hexdigest(),
            "resolved": _portable_spec(spec.resolved, base),
        },
        "inputs": inputs,
        "templates": [
            {"key": t.key, "file": portable(t.file, base) if t.file else None, "sha256": _sha256(t.text)}
            for t in spec.templates
        ],
        "tokenizer": tokenizer_identity(compiled),
        "counts": compiled.counts,
        "dedup": dedup_manifest(compiled),
        "audit": audit_manifest(compiled),
        "tokens": compiled.tokens,
        "files": files,
    }
