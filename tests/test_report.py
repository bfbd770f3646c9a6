"""report.html: every section with the numbers of the manifest and the Parquet, self-contained, reproducible."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FORMATS, dsc_cli, run_dsc
from dsc.builders import measures, package_view
from dsc.builders.measures import OpeningTally, ScriptTally, measure, token_measures
from dsc.builders.package_view import Split
from dsc.builders.report import CHART_DIR, REPORT_FILE, regenerate
from report_html import Page, assert_self_contained, number, svg_images


def _parquet(package: Path, split: str) -> dict[str, list]:
    return pq.read_table(next((package / "data").glob(f"{split}-*.parquet"))).to_pydict()


def _page(package: Path) -> tuple[str, Page]:
    text = (package / REPORT_FILE).read_text(encoding="utf-8")
    return text, Page(text)


def _report_files(package: Path) -> dict[str, bytes]:
    return {p.relative_to(package).as_posix(): p.read_bytes() for p in [package / REPORT_FILE, *sorted((package / CHART_DIR).iterdir())]}


@pytest.fixture(scope="module")
def adgen(packages) -> Path:
    return packages("adgen")


def test_every_package_has_a_self_contained_report(adgen: Path) -> None:
    text, page = _page(adgen)
    assert_self_contained(text, page)
    for section in ("funnel", "lengths", "truncation", "labels", "duplicates", "examples", "sources", "text", "identity"):
        assert section in page.ids
    images = svg_images(page)
    assert len(images) >= 5
    manifest = json.loads((adgen / "manifest.json").read_text(encoding="utf-8"))
    charts = manifest["report"]["charts"]
    assert manifest["report"]["file"] == REPORT_FILE and "report/funnel.svg" in charts and "report/lengths.svg" in charts
    for rel in charts:
        svg = (adgen / rel).read_text(encoding="utf-8")
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
        assert not re.search(r"url\((?!#)", svg) and "<script" not in svg and "<image" not in svg
    card = (adgen / "README.md").read_text(encoding="utf-8")
    assert "![funnel](report/funnel.svg)" in card and "![lengths](report/lengths.svg)" in card and "(report.html)" in card
    # nothing of the machine it was built on
    for name, content in _report_files(adgen).items():
        assert str(adgen.parent).encode() not in content and b"/tmp/" not in content and b"/work/" not in content, name


def test_funnel_and_token_numbers_match_manifest_and_parquet(adgen: Path) -> None:
    manifest = json.loads((adgen / "manifest.json").read_text(encoding="utf-8"))
    counts, tokens = manifest["counts"], manifest["tokens"]
    _, page = _page(adgen)
    funnel = {(r["stage"], r["reason"]): number(r["records"]) for r in page.rows("funnel-table")}
    assert funnel[("read", "")] == counts["read"] == 1070
    assert funnel[("truncated", "kept, cut to fit")] == counts["truncated"]
    for split, n in counts["kept"].items():
        assert funnel[("kept", split)] == n
    for reason, n in counts["dropped"].items():
        assert funnel[("duplicate", reason.removeprefix("duplicate: "))] == n
    dups = [json.loads(line) for line in (adgen / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    assert Counter(d["reason"] for d in dups) == {r.removeprefix("duplicate: "): n for r, n in counts["dropped"].items()}

    lengths = {(r["measure"], r["split"]): r for r in page.rows("lengths-table")}
    labels = {r["split"]: r for r in page.rows("labels-table")}
    for split in counts["kept"]:
        data = _parquet(adgen, split)
        total = lengths[("total tokens", split)]
        assert number(total["records"]) == tokens[split]["records"] == len(data["input_ids"])
        assert number(total["tokens"]) == tokens[split]["tokens"]
        assert number(total["max"]) == tokens[split]["length"]["max"] and number(total["p50"]) == tokens[split]["length"]["p50"]
        # the prompt is the masked lead; the response (with EOS) the rest; ADGEN's limits are 64 and 64
        lead = [next((i for i, x in enumerate(labels_) if x != -100), len(labels_)) for labels_ in data["labels"]]
        prompt, response = lengths[("prompt tokens", split)], lengths[("response tokens (with EOS)", split)]
        assert number(prompt["tokens"]) == sum(lead)
        assert number(response["tokens"]) == tokens[split]["tokens"] - sum(lead)
        assert number(prompt["limit"]) == 64 and number(prompt["at limit"]) == sum(n == 64 for n in lead)
        assert number(response["max"]) <= 64
        assert number(labels[split]["trained tokens"]) == tokens[split]["trainable"]
        assert number(labels[split]["most trained spans"]) == 1


def test_sources_text_and_identity(adgen: Path) -> None:
    manifest = json.loads((adgen / "manifest.json").read_text(encoding="utf-8"))
    _, page = _page(adgen)
    (source,) = page.rows("sources-table")
    assert source["source"] == "adgen_dev.jsonl" and number(source["read"]) == 1070
    assert number(source["kept train"]) == manifest["counts"]["kept"]["train"]
    assert number(source["tokens"]) == manifest["tokens"]["total"]["tokens"]
    assert number(source["trained tokens"]) == manifest["tokens"]["total"]["trainable"]
    scripts = {r["script"]: r for r in page.rows("scripts-table")}
    assert number(scripts["CJK"]["records"]) == sum(manifest["counts"]["kept"].values())  # ADGEN is Chinese throughout
    prompts = [p for split in manifest["counts"]["kept"] for p in _parquet(adgen, split)["prompt"]]
    expected = Counter(p.split("\n", 1)[0].strip()[:60] for p in prompts).most_common(1)[0]
    top = page.rows("openings-table")[0]
    assert (top["opening"], number(top["records"])) == expected
    identity = dict(map(tuple, page.tables["identity-table"][1:]))
    assert identity["spec sha256"] == manifest["spec"]["sha256"] and identity["tokenizer sha256"] == manifest["tokenizer"]["sha256"]
    assert identity["spec file"] == "adgen.yaml"


def test_dsc_report_regenerates_the_same_bytes(adgen: Path, tmp_path: Path) -> None:
    copy = tmp_path / "adgen"
    shutil.copytree(adgen, copy)
    built = _report_files(copy)
    shutil.rmtree(copy / CHART_DIR)
    (copy / REPORT_FILE).write_text("stale", encoding="utf-8")
    done = dsc_cli("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and REPORT_FILE in done.stdout
    assert _report_files(copy) == built


def test_side_files_read_in_small_batches_give_the_same_report(adgen: Path, tmp_path: Path, monkeypatch) -> None:
    """The report reads audit.jsonl and duplicates.jsonl a batch at a time: batch edges must not change a byte."""
    copy = tmp_path / "adgen"
    shutil.copytree(adgen, copy)
    monkeypatch.setattr(package_view, "BATCH_LINES", 2)
    regenerate(copy)
    assert _report_files(copy) == _report_files(adgen)


def test_dsc_report_on_a_folder_that_is_not_a_package(tmp_path: Path) -> None:
    done = dsc_cli("report", str(tmp_path))
    assert done.returncode == 1
    assert "not a dsc package" in done.stderr and "Traceback" not in done.stderr


def _audit_fixture(package: Path) -> list[dict]:
    """A small audit.jsonl in the agreed format, for records of the real package, and matching manifest counts."""
    train = _parquet(package, "train")
    dups = [json.loads(line) for line in (package / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    lines = [
        {"source_id": "adgen_dev.jsonl#3", "file": "data/adgen_dev.jsonl", "line": 4, "stage": "invalid",
         "reason": "summary: required field is missing", "detail": {"field": "summary"}},
        {"source_id": "adgen_dev.jsonl#8", "file": "data/adgen_dev.jsonl", "line": 9, "stage": "dropped",
         "reason": "too short after truncation", "detail": {"before": {"prompt": 300, "response": 200}}},
    ]
    cut = [sid for sid, labels in zip(train["source_id"], train["labels"], strict=True) if sum(x != -100 for x in labels) == 64][:3]
    for i, sid in enumerate(cut):
        detail = {"before": {"prompt": 40, "response": 90 + i}, "after": {"prompt": 40, "response": 64}}
        lines.append({"source_id": sid, "file": "data/adgen_dev.jsonl", "line": 100 + i, "stage": "truncated",
                      "reason": "max_target_length", "detail": detail})
    lines += [{"source_id": d["source_id"], "file": "data/adgen_dev.jsonl", "line": None, "stage": "duplicate",
               "reason": d["reason"], "detail": {"kept_source_id": d["kept_source_id"], "similarity": d["similarity"]}} for d in dups]
    (package / "audit.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    manifest["counts"]["invalid"] = {"summary: required field is missing": 1}
    manifest["counts"]["dropped"]["too short after truncation"] = 1
    (package / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return lines


def test_report_reads_the_audit(adgen: Path, tmp_path: Path) -> None:
    copy = tmp_path / "adgen"
    shutil.copytree(adgen, copy)
    lines = _audit_fixture(copy)
    regenerate(copy)
    text, page = _page(copy)
    assert_self_contained(text, page)
    funnel = {(r["stage"], r["reason"]): r for r in page.rows("funnel-table")}
    # every reason in the funnel links to its examples, which name the source location
    for key in (("invalid", "summary: required field is missing"), ("dropped", "too short after truncation"), ("duplicate", "exact")):
        assert "examples" in funnel[key][""]
    assert "invalid: summary: required field is missing (1)" in page.headings
    assert "dropped: too short after truncation (1)" in page.headings
    assert "truncated: max_target_length (3)" in page.headings
    cells = [cell for rows in page.tables.values() for row in rows for cell in row]
    assert "data/adgen_dev.jsonl:4" in cells and "data/adgen_dev.jsonl:9" in cells
    truncation = {r["side"]: r for r in page.rows("truncation-table")}
    assert number(truncation["response"]["records cut"]) == 3
    assert number(truncation["response"]["tokens removed"]) == (90 - 64) + (91 - 64) + (92 - 64)
    assert number(truncation["prompt"]["records cut"]) == 0
    assert number(truncation["total"]["p50 before"]) == 40 + 91
    assert (copy / CHART_DIR / "truncation.svg").is_file()
    sources = page.rows("sources-table")[0]
    assert number(sources["invalid"]) == 1 and number(sources["duplicate"]) == sum(1 for x in lines if x["stage"] == "duplicate")


def test_report_without_audit_falls_back_to_counts_and_duplicates(adgen: Path, tmp_path: Path) -> None:
    copy = tmp_path / "adgen"
    shutil.copytree(adgen, copy)
    (copy / "audit.jsonl").unlink(missing_ok=True)
    regenerate(copy)
    text, page = _page(copy)
    assert "no audit.jsonl" in text
    assert any(h.startswith("duplicate: exact") for h in page.headings)  # examples from duplicates.jsonl


def test_token_measures_from_labels_alone() -> None:
    labels = [[-100, -100, 5, 6, -100, 7, 8], [1, 2], [-100, -100, -100]]
    table = pa.table({"labels": pa.array(labels, pa.list_(pa.int32()))})
    m = token_measures(table)
    assert m.total.tolist() == [7, 2, 3]
    assert m.lead.tolist() == [2, 0, 3]  # a record with no trained token is all lead
    assert m.trained.tolist() == [4, 2, 0]
    assert m.spans.tolist() == [2, 1, 0] and m.masked_spans.tolist() == [2, 0, 1]  # two assistant turns, one user turn between
    assert token_measures(table.slice(0, 0)).total.tolist() == []


def test_script_mix_counts_letters_by_unicode_block() -> None:
    table = pa.table({"prompt": ["Ab1 çé ＡΩ日本한😀", "", "x"], "response": ["Ж", "", ""]})
    tally = ScriptTally()
    tally.add(table)
    assert tally.mix() == {"characters": {"Latin": 6, "CJK": 3, "other": 2}, "records": {"Latin": 2, "no letters": 1}}


def _split(table: pa.Table, rows: int) -> Split:
    """A split served `rows` records at a time."""
    return Split(rows=len(table), slices=lambda columns: (table.select(columns).slice(s, rows) for s in range(0, len(table), rows)))


def test_measures_do_not_depend_on_how_the_split_is_sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    openers = ["Translate this", "Summarize", "  Summarize  \nmore", "Write a poem", "日本語で答えて", "Write a poem\nabout"]
    n = 500
    table = pa.table({
        "labels": pa.array([[-100] * (i % 5) + [7] * (i % 7) for i in range(n)], pa.list_(pa.int32())),
        "prompt": [f"{openers[i % len(openers)]}{'' if i % 3 else f' #{i}'}" for i in range(n)],
        "response": ["ok" if i % 2 else "はい" for i in range(n)],
        "source_id": [f"{'a' if i % 4 else 'b'}.jsonl#{i}" for i in range(n)],
    })
    whole = measure({"train": _split(table, n), "validation": _split(table.slice(0, 40), 40)})
    monkeypatch.setattr(measures, "MERGE_ROWS", 3)  # merge the openings' counts many times over
    monkeypatch.setattr(measures, "PIECE_TOKENS", 10)  # and measure tokens and scripts a few records at a time
    monkeypatch.setattr(measures, "PIECE_BYTES", 20)
    sliced = measure({"train": _split(table, 7), "validation": _split(table.slice(0, 40), 3)})
    for name in ("train", "validation"):
        for attr in ("total", "lead", "trained", "spans", "masked_spans"):
            assert getattr(sliced.tokens[name], attr).tolist() == getattr(whole.tokens[name], attr).tolist()
    assert (sliced.sources, sliced.scripts, sliced.openings) == (whole.sources, whole.scripts, whole.openings)
    assert whole.sources["b.jsonl"]["train"][0] == 125 and whole.sources["a.jsonl"]["validation"][0] == 30
    first_lines = [p.split("\n")[0].strip()[:60] for p in table.column("prompt").to_pylist() + table.column("prompt").to_pylist()[:40]]
    expected = sorted(Counter(first_lines).items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert whole.openings == expected and ("Summarize", 181) in whole.openings


def test_openings_past_the_kept_limit_are_summarized_then_counted_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measures, "MERGE_ROWS", 16)
    monkeypatch.setattr(measures, "OPENINGS_KEPT", 32)  # 2,000 one-off openings overflow it many times
    prompts = [f"Template {k}\nbody" for k in range(12) for _ in range(400 - 20 * k)] + [f"one-off {i}" for i in range(2000)]
    order = np.random.default_rng(0).permutation(len(prompts))
    table = pa.table({
        "labels": pa.array([[1]] * len(prompts), pa.list_(pa.int32())),
        "prompt": [prompts[i] for i in order],
        "response": [""] * len(prompts),
        "source_id": [f"a.jsonl#{i}" for i in range(len(prompts))],
    })
    summarized = measure({"train": _split(table, 97)})
    assert summarized.openings_bound > 0
    assert summarized.openings == [(f"Template {k}", 400 - 20 * k) for k in range(10)]  # exact counts, after the recount
    monkeypatch.setattr(measures, "OPENINGS_KEPT", 1 << 18)
    assert measure({"train": _split(table, 97)}).openings_bound == 0


def test_opening_counts_merge_across_many_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measures, "MERGE_ROWS", 2)
    tally = OpeningTally()
    for i in range(60):
        tally.add(pa.array([f"line {i % 13}", f"line {i % 5}\nsecond", "same"]))
    assert tally.top(3) == [("same", 60), ("line 0", 17), ("line 1", 17)]


def test_two_builds_into_different_folders_write_the_same_report(tmp_path: Path) -> None:
    import dsc

    one = dsc.build(FORMATS / "gorilla.yaml", output=tmp_path / "one", limit=400).path
    two = dsc.build(FORMATS / "gorilla.yaml", output=tmp_path / "elsewhere" / "two", limit=400).path
    assert _report_files(one) == _report_files(two)
    _, page = _page(one)
    funnel = {(r["stage"], r["reason"]): number(r["records"]) for r in page.rows("funnel-table")}
    manifest = json.loads((one / "manifest.json").read_text(encoding="utf-8"))
    invalid = manifest["counts"]["invalid"]
    assert sum(invalid.values()) == 2  # gorilla's records 357 and 397 hold no API answer
    shown = {reason: n for (stage, reason), n in funnel.items() if stage == "invalid"}
    assert sorted(shown.values()) == sorted(invalid.values())
    assert all(any(key.endswith(reason) for key in invalid) for reason in shown)  # "invalid: " is not repeated


def test_dsc_report_open_hands_the_page_to_the_browser(adgen: Path, tmp_path: Path) -> None:
    import shlex
    import sys
    import time

    copy = tmp_path / "adgen"
    shutil.copytree(adgen, copy)
    opened = tmp_path / "opened.txt"
    browser = f"{shlex.quote(sys.executable)} -c 'import pathlib, sys; pathlib.Path(sys.argv[2]).write_text(sys.argv[1])' %s {opened}"
    done = run_dsc("report", str(copy), "--open", env={"BROWSER": browser})
    assert done.returncode == 0, done.stderr
    for _ in range(100):  # the browser is started, not waited for
        if opened.exists() and opened.read_text():
            break
        time.sleep(0.1)
    assert opened.read_text() == (copy / REPORT_FILE).resolve().as_uri()
