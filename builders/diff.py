"""`dsc diff OLD NEW`: what changed between two packages, and which spec, input or tokenizer change explains it.

Records are matched by `source_id`; a record present in both changed when the hash of its input_ids and labels differs.
Hashes are computed over whole columns with numpy (a splitmix64 mix of every token and its position, summed per
record), so a million-record comparison takes seconds. The comparison is laid out once as titled tables, which the
terminal text and the HTML page both print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.builders import charts, html
from dsc.builders.charts import Panel, Series
from dsc.builders.package_view import PackageView, input_name, read_view, source_names, source_rows
from dsc.compiler.pipeline import quantiles

COLUMNS = ["input_ids", "labels", "source_id"]
IGNORED_SPEC_KEYS = ("output",)  # where a package was written does not change what is in it
TOKENIZER_KEYS = ("name", "sha256", "vocab_size", "eos_token", "eos_id", "pad_id", "prefix_ids")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _list_hash(column: pa.ChunkedArray, salt: int) -> np.ndarray:
    """One 64-bit hash per list: the sum of mix(value, position), then mixed with the list's length."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else np.zeros(0, np.int64)
    position = (np.arange(len(flat)) - np.repeat(starts, lengths)).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = _mix(flat ^ _mix(position + np.uint64(salt)))
        sums = np.zeros(len(lengths), dtype=np.uint64)
        nonempty = lengths > 0
        if nonempty.any():
            sums[nonempty] = np.add.reduceat(mixed, starts[nonempty])
        return _mix(sums ^ _mix(lengths.astype(np.uint64)))


def content_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit content hash of each record's input_ids and labels together."""
    with np.errstate(over="ignore"):
        return _mix(_list_hash(table.column("input_ids"), 1) * np.uint64(3) + _list_hash(table.column("labels"), 2))


def _records(view: PackageView) -> pa.Table:
    """source_id, split, content hash and token count of every record of a package (its splits read a slice at a time)."""
    parts = [
        pa.table({
            "source_id": table.column("source_id"),
            "split": pa.array([split] * len(table), pa.string()),
            "hash": content_hashes(table),
            "tokens": pc.list_value_length(table.column("input_ids")),
        })
        for split, data in view.splits.items()
        for table in data.slices(COLUMNS)
    ]
    empty = pa.schema([("source_id", pa.string()), ("split", pa.string()), ("hash", pa.uint64()), ("tokens", pa.int32())])
    return pa.concat_tables([empty.empty_table(), *parts])


def _ordered(ids: pa.Array | pa.ChunkedArray) -> list[str]:
    """Source ids in file order, then row order."""
    if not len(ids):
        return []
    table = pa.table({"id": ids, "file": source_names(ids), "row": source_rows(ids)})
    return table.take(pc.sort_indices(table, [("file", "ascending"), ("row", "ascending")])).column("id").to_pylist()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in value:
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_keys(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """Key paths whose values differ between two nested dicts (lists compared whole), as (path, old, new)."""
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if k.split(".", 1)[0] not in ignore]
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


@dataclass
class Table:
    """A titled table of the comparison: what both the terminal text and the HTML page print."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class PackageDiff:
    """Two packages compared."""

    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    moved: list[tuple[str, str, str]]
    unchanged: int
    old_view: PackageView = field(repr=False)
    new_view: PackageView = field(repr=False)
    lengths: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)


def diff_packages(old: str | Path, new: str | Path) -> PackageDiff:
    """Compare two package folders (each checked against its manifest first)."""
    old_view, new_view = read_view(old), read_view(new)
    a, b = _records(old_view), _records(new_view)
    joined = a.join(b, "source_id", join_type="full outer", left_suffix="_old", right_suffix="_new", coalesce_keys=True)
    old_missing = pc.is_null(joined.column("hash_old"))
    new_missing = pc.is_null(joined.column("hash_new"))
    both = pc.invert(pc.or_(old_missing, new_missing))
    in_both = joined.filter(both)
    differs = pc.not_equal(in_both.column("hash_old"), in_both.column("hash_new"))
    moved_rows = in_both.filter(pc.not_equal(in_both.column("split_old"), in_both.column("split_new")))
    moved_order = {sid: i for i, sid in enumerate(_ordered(moved_rows.column("source_id")))}
    moved = sorted(zip(*(moved_rows.column(c).to_pylist() for c in ("source_id", "split_old", "split_new")), strict=True),
                   key=lambda m: moved_order[m[0]])
    splits = list(dict.fromkeys([*old_view.splits, *new_view.splits]))
    lengths = {
        s: tuple(r.filter(pc.equal(r.column("split"), s)).column("tokens").to_numpy() for r in (a, b))
        for s in splits
    }
    return PackageDiff(
        old=str(old),
        new=str(new),
        added=_ordered(joined.filter(old_missing).column("source_id")),
        removed=_ordered(joined.filter(new_missing).column("source_id")),
        changed=_ordered(in_both.filter(differs).column("source_id")),
        moved=moved,
        unchanged=int(len(in_both) - pc.sum(differs).as_py()) if len(in_both) else 0,
        old_view=old_view,
        new_view=new_view,
        lengths=lengths,
    )


def _records_table(diff: PackageDiff, shown: int) -> Table:
    def listed(ids: list[str]) -> str:
        more = f" ... and {len(ids) - shown:,} more" if len(ids) > shown else ""
        return ", ".join(ids[:shown]) + more

    rows = [
        ["added", len(diff.added), listed(diff.added)],
        ["removed", len(diff.removed), listed(diff.removed)],
        ["changed", len(diff.changed), listed(diff.changed)],
        ["moved split", len(diff.moved), listed([f"{s} ({a} -> {b})" for s, a, b in diff.moved])],
        ["unchanged", diff.unchanged, ""],
    ]
    return Table("Records (matched by source_id; changed: input_ids or labels differ)", ["", "records", "source ids"], rows)


def _tokens_table(diff: PackageDiff) -> Table:
    a, b = diff.old_view.manifest.get("tokens", {}), diff.new_view.manifest.get("tokens", {})
    rows = []
    for split in dict.fromkeys([*a, *b]):
        x, y = a.get(split, {}), b.get(split, {})
        rows.append([split, x.get("records"), y.get("records"), x.get("tokens"), y.get("tokens"),
                     (y.get("tokens") or 0) - (x.get("tokens") or 0), x.get("trainable"), y.get("trainable")])
    headers = ["split", "records old", "records new", "tokens old", "tokens new", "change", "trained old", "trained new"]
    return Table("Tokens", headers, rows)


def _lengths_table(diff: PackageDiff) -> Table:
    rows = []
    for split, (x, y) in diff.lengths.items():
        qa, qb = quantiles(x), quantiles(y)
        rows.append([split, *(f"{qa[k]} -> {qb[k]}" for k in ("min", "mean", "p50", "p95", "max"))])
    return Table("Tokens per record", ["split", "min", "mean", "p50", "p95", "max"], rows)


def _by_source(diff: PackageDiff) -> Table:
    olds = {input_name(e): e for e in diff.old_view.manifest.get("inputs", [])}
    news = {input_name(e): e for e in diff.new_view.manifest.get("inputs", [])}
    counted: dict[str, list[int]] = {}
    for i, ids in enumerate((diff.added, diff.removed, diff.changed)):
        for sid in ids:
            counted.setdefault(sid.rsplit("#", 1)[0], [0, 0, 0])[i] += 1
    rows = []
    for name in dict.fromkeys([*olds, *news, *counted]):
        x, y = olds.get(name), news.get(name)
        if x is None or y is None:
            input_change = "new input" if x is None and y is not None else "input removed" if y is None and x is not None else ""
        else:
            same = (x.get("sha256") or x.get("fingerprint")) == (y.get("sha256") or y.get("fingerprint"))
            input_change = "same" if same else "content changed"
        added, removed, changed = counted.get(name, [0, 0, 0])
        rows.append([name, added, removed, changed, input_change, (x or {}).get("records"), (y or {}).get("records")])
    return Table("By source", ["source", "added", "removed", "changed", "input file", "records old", "records new"], rows)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(diff: PackageDiff) -> Table:
    a, b = diff.old_view.manifest, diff.new_view.manifest
    rows: list[list[Any]] = []
    spec = changed_keys(diff.old_view.resolved, diff.new_view.resolved, IGNORED_SPEC_KEYS)
    rows += [["spec", k, _short(x), _short(y)] for k, x, y in spec]
    if a.get("spec", {}).get("sha256") != b.get("spec", {}).get("sha256") and not any(r[0] == "spec" for r in rows):
        rows.append(["spec file", "sha256", a.get("spec", {}).get("sha256"), b.get("spec", {}).get("sha256")])
    olds = {input_name(e): e for e in a.get("inputs", [])}
    news = {input_name(e): e for e in b.get("inputs", [])}
    for name in dict.fromkeys([*olds, *news]):
        x, y = olds.get(name, {}), news.get(name, {})
        for key in ("sha256", "fingerprint", "records", "revision"):
            if x.get(key) != y.get(key):
                rows.append([f"input {name}", key, x.get(key), y.get(key)])
    rows += [["tokenizer", k, _short(x), _short(y)] for k, x, y in changed_keys(
        {k: a.get("tokenizer", {}).get(k) for k in TOKENIZER_KEYS}, {k: b.get("tokenizer", {}).get(k) for k in TOKENIZER_KEYS})]
    rows += [["template", k, x, y] for k, x, y in changed_keys(
        {t["key"]: t.get("sha256") for t in a.get("templates", [])}, {t["key"]: t.get("sha256") for t in b.get("templates", [])})]
    rows += [["version", k, x, y] for k, x, y in changed_keys(a.get("versions", {}), b.get("versions", {}))]
    rows += [["counts", k, x, y] for k, x, y in changed_keys(a.get("counts", {}), b.get("counts", {}))]
    note = "" if rows else "The manifests agree on the spec, inputs, tokenizer, templates, versions and counts."
    return Table("What changed (from the manifests)", ["what", "key", "old", "new"], rows, note)


def tables(diff: PackageDiff, shown: int) -> list[Table]:
    """The whole comparison as titled tables, in the order both renderers print them."""
    return [_records_table(diff, shown), _tokens_table(diff), _lengths_table(diff), _by_source(diff), _explain(diff)]


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def diff_text(diff: PackageDiff, shown: int = 10) -> str:
    """The comparison for a terminal: each table with aligned columns."""
    out = [f"dsc diff: {diff.old} -> {diff.new}"]
    for t in tables(diff, shown):
        out += ["", t.title + ":"]
        if t.note:
            out.append(f"  {t.note}")
        if not t.rows:
            continue
        cells = [t.headers] + [[_cell(v) for v in row] for row in t.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(t.headers) - 1)]
        for row in cells:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in out) + "\n"


def diff_html(diff: PackageDiff, shown: int = 500) -> str:
    """The same comparison as a self-contained HTML page, with the length distributions overlaid per split."""
    panels = [
        Panel(split, [Series("old", x, charts.SPLIT_COLORS[0]), Series("new", y, charts.SPLIT_COLORS[1])], {})
        for split, (x, y) in diff.lengths.items()
    ]
    body = [f"<h1>dsc diff</h1><p>{html.text(diff.old)} &rarr; {html.text(diff.new)}</p>"]
    for t in tables(diff, shown):
        body.append(f"<h2>{html.text(t.title)}</h2>")
        if t.note:
            body.append(f'<p class="note">{html.text(t.note)}</p>')
        if t.rows:
            body.append(html.table(t.headers, t.rows))
        if t.title == "Tokens per record" and panels:
            body.append(html.image(charts.histograms(panels, cols=len(panels)), "tokens per record, old and new, per split"))
    return html.page("dsc diff", body)
