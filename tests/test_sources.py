"""Sources: JSON, JSON lines, CSV, Parquet, globs, column renames, datasets ids, --limit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import DATA

import dsc

SPEC = """name: src
sources:
{sources}
fields:
  instruction: {{type: string, required: true}}
  input: {{type: string, default: ""}}
  output: {{type: string, required: true}}
templates:
  prompt: {{file: alpaca_prompt.j2}}
  response: "{{{{ output }}}}"
"""


def alpaca(n: int) -> list[dict]:
    return json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:n]


def build(tmp_path: Path, sources: str, **kw) -> tuple[list[dict], dict]:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(sources=sources), encoding="utf-8")
    package = dsc.build(spec, output=tmp_path / "out", **kw)
    rows = [r for split in datasets.load_dataset(str(package.path)).values() for r in split]
    return rows, package.manifest


def test_every_file_format_and_renames(tmp_path: Path) -> None:
    records = alpaca(40)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in records[:10]), encoding="utf-8")
    with (tmp_path / "b.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(records[10:20])
    renamed = [{"question": r["instruction"], "context": r["input"], "answer": r["output"]} for r in records[20:30]]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "c.parquet")
    (tmp_path / "d.json").write_text(json.dumps(records[30:40]), encoding="utf-8")
    sources = f"""  - path: {tmp_path}/a.jsonl
  - path: {tmp_path}/b.csv
  - path: {tmp_path}/c.parquet
    columns: {{question: instruction, context: input, answer: output}}
  - path: {tmp_path}/d.json"""
    rows, manifest = build(tmp_path, sources)
    assert sorted(r["response"] for r in rows) == sorted(r["output"] for r in records)
    assert [i["format"] for i in manifest["inputs"]] == ["jsonl", "csv", "parquet", "json"]
    ids = {r["source_id"] for r in rows}
    assert {"a.jsonl#0", "b.csv#9", "c.parquet#5", "d.json#9"} <= ids


def test_globs_and_limit(tmp_path: Path) -> None:
    records = alpaca(30)
    for k in range(3):
        (tmp_path / f"part-{k}.jsonl").write_text("\n".join(json.dumps(r) for r in records[k * 10 : k * 10 + 10]), encoding="utf-8")
    rows, manifest = build(tmp_path, f"  - path: {tmp_path}/part-*.jsonl")
    assert len(rows) == 30 and len(manifest["inputs"]) == 3
    rows, manifest = build(tmp_path, f"  - path: {tmp_path}/part-*.jsonl", limit=15)
    assert len(rows) == 15 and manifest["counts"]["read"] == 15


def test_datasets_id_source(tmp_path: Path) -> None:
    """A `hub:` source goes through datasets.load_dataset (here a local saved dataset, as no network is allowed)."""
    folder = tmp_path / "hubdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in alpaca(12)), encoding="utf-8")
    rows, manifest = build(tmp_path, f"  - hub: {folder}\n    split: train")
    assert len(rows) == 12
    assert manifest["inputs"][0]["hub"] == str(folder) and manifest["inputs"][0]["records"] == 12
