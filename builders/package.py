"""Writing a dataset package: Parquet shards, card, manifest (and whatever extra writers add), atomically.

Everything is written into a staging folder beside the target and renamed into place at the end, so a package
appears complete or not at all; a failed or interrupted build leaves the previous package as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsc.builders.audit import write_audit
from dsc.builders.card import render_card
from dsc.builders.duplicates import write_duplicates
from dsc.builders.manifest import build_manifest
from dsc.builders.outputs import PACKAGE, Kind, check_package_output, check_replaceable
from dsc.compiler.engine.spill import Spill
from dsc.compiler.pipeline import Compiled, package_features

MAX_SHARD_BYTES = 500 * 1024 * 1024
"""Shards stay under the Hub's recommended Parquet size (measured on the in-memory Arrow size, which Parquet beats)."""
ROW_GROUP = 10_000


@dataclass
class Extra:
    """What an extra writer adds to a package besides its files: manifest entries and a section of the card."""

    manifest: dict[str, Any] = field(default_factory=dict)
    card: str = ""


ExtraWriter = Callable[[Path, Compiled], "Extra | None"]


class Package(NamedTuple):
    """A written package: where it is and what it holds (`path, manifest = dsc.build(...)` unpacks it)."""

    path: Path
    manifest: dict[str, Any]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_split(spill: Spill, name: str, data_dir: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Write one split as Parquet shards of even row counts, each in row groups of ROW_GROUP rows, a row group at a
    time from the build's spill (`Spill.walk`: one row group's pages held at once); returns the files and the split's
    Arrow size."""
    (size,) = (arrow_size(whole) for whole in spill.walk([(0, spill.rows)]))  # reads the offsets only
    shards = max(1, math.ceil(size / MAX_SHARD_BYTES))
    rows_per = math.ceil(spill.rows / shards) if spill.rows else 0
    metadata = {b"huggingface": json.dumps({"info": {"features": package_features()}}).encode()}
    schema = spill.schema.with_metadata(metadata)
    files = {}
    for i in range(shards):
        rel = f"data/{name}-{i:05d}-of-{shards:05d}.parquet"
        first, rows = i * rows_per, max(0, min(rows_per, spill.rows - i * rows_per))
        groups = [(start, min(ROW_GROUP, first + rows - start)) for start in range(first, first + rows, ROW_GROUP)]
        with pq.ParquetWriter(data_dir.parent / rel, schema, compression="zstd") as writer:
            for group in spill.walk(groups):
                writer.write_table(group.combine_chunks().replace_schema_metadata(metadata), row_group_size=ROW_GROUP)
        files[rel] = {"rows": rows, "bytes": (data_dir.parent / rel).stat().st_size}
    return files, size


def _column_size(column: pa.ChunkedArray | pa.Array) -> int:
    kind = column.type
    bitmap = math.ceil(len(column) / 8) if column.null_count else 0
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        return bitmap + 4 * (len(column) + 1) + int(pc.sum(pc.binary_length(column)).as_py() or 0)
    if pa.types.is_list(kind):
        return bitmap + 4 * (len(column) + 1) + _column_size(pc.list_flatten(column))
    return bitmap + len(column) * kind.bit_width // 8


def arrow_size(table: pa.Table) -> int:
    """The bytes `table` takes in Arrow's layout as one chunk per column, with null bitmaps only where there are nulls.

    The card's num_bytes: `Table.nbytes` depends on how the rows were chunked and whether a bitmap was allocated,
    which differ with --num-proc; this depends on the rows alone. Knows the package's column types (strings, lists
    of fixed-width values)."""
    return sum(_column_size(column) for column in table.columns)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(leftover: Path, what: str, kind: Kind) -> bool:
    """A staging folder, or a moved-aside folder that is empty or of `kind`: safe to delete."""
    if not leftover.is_dir() or leftover.is_symlink():
        return False
    return what == "tmp" or kind.owns(leftover) or not any(leftover.iterdir())


def reclaim(target: Path, kind: Kind = PACKAGE) -> None:
    """Clean up after builds that were killed (SIGKILL, power loss) while writing `target`.

    Their staging folders are removed, and if one died between moving the old folder aside and moving the new one
    in, the old folder is put back. Folders of builds still running (their pid is alive) are left alone, and so is a
    moved-aside entry dsc cannot prove it wrote (older dsc versions moved a target file aside): it is put back when
    the target is free, else kept."""
    prefix = f".{target.name}."
    for leftover in sorted(target.parent.iterdir()) if target.parent.is_dir() else []:
        if not leftover.name.startswith(prefix):
            continue
        parts = leftover.name[len(prefix) :].split("-")
        if len(parts) != 3 or parts[0] not in ("tmp", "old") or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        if parts[0] == "old" and not (target.exists() or target.is_symlink()):
            os.rename(leftover, target)
        elif _ours(leftover, parts[0], kind):
            shutil.rmtree(leftover, ignore_errors=True)


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def staging(target: Path, kind: Kind = PACKAGE) -> Iterator[Path]:
    """A fresh folder beside `target`; on success it replaces `target`, on any failure it disappears.

    `target` must be absent, an empty folder or a folder of `kind` (checked before and again at the swap). The
    folder it replaces is moved aside, then removed once the new one is in place, or moved back if the swap fails."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    reclaim(target, kind)
    check_replaceable(target, kind)
    stage = _sibling(target, "tmp")
    stage.mkdir()
    try:
        yield stage
        check_replaceable(target, kind)
        old = _sibling(target, "old")
        if target.exists():
            os.rename(target, old)
        try:
            os.rename(stage, target)
        except BaseException:
            if old.exists():
                os.rename(old, target)
            raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)  # whatever a failure leaves, the next reclaim() removes


def write_package(compiled: Compiled, target: Path, extra: list[ExtraWriter] | None = None) -> Package:
    """Write the splits, the card and the manifest (and run `extra` writers) into `target`, atomically.

    Raises `OutputError` (nothing written) when `target` is not a safe place for the package (see `dsc.builders.outputs`)."""
    target = check_package_output(compiled.spec, target)
    with staging(target) as stage:
        data_dir = stage / "data"
        data_dir.mkdir()
        files: dict[str, dict[str, Any]] = {}
        split_info: dict[str, dict[str, int]] = {}
        for name, spill in compiled.spills.items():
            written, size = _write_split(spill, name, data_dir)
            for rel, info in written.items():
                info["sha256"] = _file_sha256(stage / rel)
            files.update(written)
            split_info[name] = {
                "num_examples": spill.rows,
                "num_bytes": size,
                "download_size": sum(w["bytes"] for w in written.values()),
            }
        fingerprint = hashlib.sha256(
            json.dumps({rel: info["sha256"] for rel, info in sorted(files.items())}).encode()
        ).hexdigest()[:16]
        writers = [write_duplicates, write_audit, *(extra or [])]
        extras = [added for writer in writers if (added := writer(stage, compiled)) is not None]
        manifest = build_manifest(compiled, files, fingerprint)
        for added in extras:
            manifest.update(added.manifest)
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        card = render_card(compiled, split_info, fingerprint, [a.card for a in extras if a.card])
        (stage / "README.md").write_text(card, encoding="utf-8")
    return Package(path=target, manifest=manifest)
