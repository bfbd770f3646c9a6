"""Reading a built package back: its manifest, after checking the data files it lists are there and unchanged.

What leaves the machine (a publish) or feeds another trainer (an export) must be the data the card and manifest
describe, so both start here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dsc.compiler.errors import DscError

PACKAGE_FORMAT = "dsc-package/1"


class PackageError(DscError):
    """The folder is not a complete, unchanged dsc package."""

    exit_code = 1


def read_package(folder: str | Path) -> dict[str, Any]:
    """The manifest of a package folder, after checking every data file it lists is there with its recorded sha256."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise PackageError(f"{folder}: not a dsc package (no manifest.json); build one with `dsc build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackageError(f"{manifest_path}: cannot read the manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"{manifest_path}: not a {PACKAGE_FORMAT} manifest")
    for rel, info in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise PackageError(f"{path}: listed in the manifest but missing; rebuild the package")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != info.get("sha256"):
            raise PackageError(
                f"{path}: changed since the build (sha256 differs from the manifest); rebuild the package"
            )
    return manifest
