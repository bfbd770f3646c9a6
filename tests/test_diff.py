"""`dsc diff`: two real builds that differ by a known set of records, and the change that explains it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import DATA, dsc_cli
from dsc.builders.diff import changed_keys, content_hashes, diff_packages, diff_text, tables
from report_html import Page, assert_self_contained, svg_images

import dsc

RECORDS = 60
EDITED = [3, 10]  # output changed: same source_id, other tokens
BROKEN = [20, 30]  # output removed: invalid under on_invalid: skip, so gone from the new package
APPENDED = 4


def _spec(folder: Path, data: list[dict], **extra: object) -> Path:
    folder.mkdir()
    (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
    spec = {
        "name": "small",
        "sources": [{"path": "data.json"}],
        "fields": {"instruction": {"type": "string", "required": True}, "input": {"type": "string", "default": ""},
                   "output": {"type": "string", "required": True}},
        "templates": {"prompt": {"file": "alpaca_prompt.j2"}, "response": "{{ output }}"},
        "on_invalid": "skip",
        "split": {"validation": 0.1, "seed": 42},
        **extra,
    }
    (folder / "small.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder / "small.yaml"


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("diff")
    base = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    old = base[:RECORDS]
    new = [dict(r) for r in old] + base[RECORDS : RECORDS + APPENDED]
    for i in EDITED:
        new[i]["output"] += " (edited)"
    for i in BROKEN:
        del new[i]["output"]
    a = dsc.build(_spec(root / "old", old), output=root / "a").path
    b = dsc.build(_spec(root / "new", new), output=root / "b").path
    c = dsc.build(_spec(root / "short", old, lengths={"max_length": 96}), output=root / "c").path
    return a, b, c


def _table(diff, title: str):
    return next(t for t in tables(diff, 10) if t.title.startswith(title))


def _ids(rows: list[int]) -> list[str]:
    return [f"data.json#{i}" for i in rows]


def test_diff_lists_exactly_the_records_that_differ(builds) -> None:
    a, b, _ = builds
    diff = diff_packages(a, b)
    assert diff.added == _ids(range(RECORDS, RECORDS + APPENDED))
    assert diff.removed == _ids(BROKEN)
    assert diff.changed == _ids(EDITED)
    assert diff.unchanged == RECORDS - len(BROKEN) - len(EDITED)
    for _sid, old_split, new_split in diff.moved:  # the split is decided on content and the record count
        assert old_split != new_split
    text = diff_text(diff)
    assert "data.json#3, data.json#10" in text and "data.json#20, data.json#30" in text
    records = {row[0]: row[1] for row in _table(diff, "Records").rows}
    assert records == {"added": APPENDED, "removed": 2, "changed": 2, "moved split": len(diff.moved), "unchanged": diff.unchanged}
    # what explains it: the input file changed (new sha256, more records) and two records became invalid
    why = {(row[0], row[1]): (row[2], row[3]) for row in _table(diff, "What changed").rows}
    assert why[("input data.json", "records")] == (RECORDS, RECORDS + APPENDED)
    assert ("input data.json", "sha256") in why
    assert [v for (what, key), v in why.items() if what == "counts" and key.startswith("invalid.")] == [(None, 2)]
    assert not [key for what, key in why if what in ("spec", "tokenizer", "template")]
    (source,) = _table(diff, "By source").rows
    assert source == ["data.json", APPENDED, 2, 2, "content changed", RECORDS, RECORDS + APPENDED]


def test_diff_of_a_spec_change_names_the_key_and_the_records(builds) -> None:
    a, _, c = builds
    diff = diff_packages(a, c)
    assert diff.added == [] and diff.removed == []
    old = pq.read_table(next((a / "data").glob("train-*.parquet"))).to_pydict()
    longer = {sid for sid, ids in zip(old["source_id"], old["input_ids"], strict=True) if len(ids) > 96}
    val = pq.read_table(next((a / "data").glob("validation-*.parquet"))).to_pydict()
    longer |= {sid for sid, ids in zip(val["source_id"], val["input_ids"], strict=True) if len(ids) > 96}
    assert longer and set(diff.changed) == longer  # exactly the records the new max_length cut
    assert ("lengths.max_length", None, 96) in changed_keys(diff.old_view.resolved, diff.new_view.resolved, ("output",))
    assert ["spec", "lengths.max_length", "None", "96"] in _table(diff, "What changed").rows
    assert "lengths.max_length" in diff_text(diff)


def test_content_hash_tells_ids_and_labels_apart(builds) -> None:
    a, _, _ = builds
    table = pq.read_table(next((a / "data").glob("train-*.parquet")))
    hashes = content_hashes(table)
    assert len(set(hashes.tolist())) == len(table)
    labels = table.column("labels").to_pylist()
    assert labels[0][0] == -100
    labels[0] = [table.column("input_ids")[0].as_py()[0], *labels[0][1:]]  # same ids, the first prompt token trained
    changed = table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(labels, table.schema.field("labels").type))
    again = content_hashes(changed)
    assert again[0] != hashes[0] and (again[1:] == hashes[1:]).all()


def test_dsc_diff_cli_text_and_html(builds, tmp_path: Path) -> None:
    a, b, _ = builds
    out = tmp_path / "diff.html"
    done = dsc_cli("diff", str(a), str(b), "--html", str(out), "-n", "1")
    assert done.returncode == 0, done.stderr
    assert "data.json#20 ... and 1 more" in done.stdout and f"wrote {out}" in done.stdout
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(text, page)
    assert svg_images(page)
    cells = [cell for rows in page.tables.values() for row in rows for cell in row]
    assert "data.json#20, data.json#30" in cells and "data.json#3, data.json#10" in cells
    assert dsc_cli("diff", str(a), str(b), "--html", str(out)).returncode == 0  # its own page is replaced
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my notes</html>", encoding="utf-8")
    refused = dsc_cli("diff", str(a), str(b), "--html", str(mine))
    assert refused.returncode == 2 and "is not a page dsc wrote" in refused.stderr
    assert mine.read_text(encoding="utf-8") == "<html>my notes</html>"


def test_dsc_diff_of_a_folder_that_is_not_a_package(builds, tmp_path: Path) -> None:
    a, _, _ = builds
    done = dsc_cli("diff", str(a), str(tmp_path))
    assert done.returncode == 1
    assert "not a dsc package" in done.stderr and "Traceback" not in done.stderr
