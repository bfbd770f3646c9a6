"""Dedup against known answers: real English and Chinese records with injected near-copies, at the default settings.

The originals are real records (Alpaca's English demo, ADGEN's Chinese dev set) minus their own near-copies (an exact
character 5-gram Jaccard >= 0.5, computed without MinHash), plus English records that share a template instruction and
differ in a short real filler. Copies get case, whitespace and punctuation noise and replacements sized to the text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from conftest import DATA, FORMATS
from dsc.compiler.dedup.passes import Duplicates, deduplicate
from dsc.compiler.pipeline import Options, render
from dsc.compiler.spec import load_spec
from near_copies import (
    chinese_edit,
    distinct,
    english_edit,
    one_char_edit,
    one_word_edit,
    other_answers,
    pairs,
    scores,
    sharing_a_template,
    with_near_copies,
)

AIM = 0.95


def _spec(tmp: Path, records: list[dict[str, Any]], fields: list[str], dedup: str) -> Path:
    data = tmp / "records.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    declared = "\n".join(f"  {f}: {{type: string, default: ''}}" for f in fields)
    spec = tmp / "spec.yaml"
    spec.write_text(
        f"name: quality\nsources: [{{path: {data.name}}}]\nfields:\n{declared}\n"
        f'templates:\n  prompt: "{{{{ {fields[0]} }}}}\\n{{{{ {fields[1]} }}}}"\n  response: "{{{{ {fields[-1]} }}}}"\n'
        f"dedup:\n{dedup}\n",
        encoding="utf-8",
    )
    return spec


def _run(tmp: Path, records: list[dict[str, Any]], fields: list[str], dedup: str) -> Duplicates:
    datasets.disable_progress_bars()
    spec = load_spec(_spec(tmp, records, fields, dedup))
    dups = deduplicate(spec, render(spec, Options(), signatures=True))
    return dups


def _clusters(dups: Duplicates) -> list[set[int]]:
    out: dict[int, set[int]] = {}
    for dropped, kept in zip(dups.dropped.tolist(), dups.kept.tolist(), strict=True):
        out.setdefault(kept, {kept}).add(dropped)
    return list(out.values())


def _truth(groups: list[int]) -> list[set[int]]:
    out: dict[int, set[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, set()).add(i)
    return [g for g in out.values() if len(g) > 1]


def _english(compare: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    alpaca = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    base = [alpaca[i] for i in distinct(["\n".join(r[f] for f in compare) for r in alpaca])]
    templates = [r["instruction"] for r in base if r["input"] and 6 <= len(r["instruction"].split()) <= 12][:10]
    fillers = [r["input"] for r in base if r["input"] and 2 <= len(r["input"].split()) <= 6]
    base += [{"instruction": t, "input": f, "output": ""} for t, f in sharing_a_template(templates, fillers, 15, seed=3)]
    vocabulary = sorted({w for r in alpaca for w in r["output"].split() if w.isalpha()})
    return with_near_copies(base, compare, english_edit(vocabulary), seed=7)


@pytest.mark.parametrize("compare", [["instruction", "input"], ["instruction", "input", "output"]], ids=["prompt", "whole"])
def test_english_near_copies_found_and_templates_kept(tmp_path: Path, compare: list[str]) -> None:
    records, groups = _english(compare)
    dups = _run(tmp_path, records, ["instruction", "input", "output"], f"  compare: {json.dumps(compare)}")
    precision, recall = scores(_clusters(dups), _truth(groups))
    print(f"English ({'+'.join(compare)}): {len(records)} records, precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= AIM and recall >= AIM, (precision, recall)


def test_chinese_near_copies_found(tmp_path: Path) -> None:
    adgen = [json.loads(line) for line in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()]
    base = [adgen[i] for i in distinct([r["content"] + "\n" + r["summary"] for r in adgen])]
    alphabet = sorted({c for r in adgen for c in r["summary"] if "\u4e00" <= c <= "\u9fff"})
    records, groups = with_near_copies(base, ["content", "summary"], chinese_edit(alphabet), seed=11)
    dups = _run(tmp_path, records, ["content", "summary"], "  compare: [content, summary]")
    precision, recall = scores(_clusters(dups), _truth(groups))
    print(f"Chinese (content+summary): {len(records)} records, precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= AIM and recall >= AIM, (precision, recall)
    shared_tags = len(base) - len({r["content"] for r in base})
    assert shared_tags > 20, "ADGEN repeats tag lists: records sharing one must be among the originals"


def test_word_shingles_miss_what_character_shingles_find(tmp_path: Path) -> None:
    """Why `auto` shingles Chinese by character: split on non-word characters, a two-character edit leaves no shared
    shingle, so the same copies go unfound."""
    adgen = [json.loads(line) for line in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()][:300]
    alphabet = sorted({c for r in adgen for c in r["summary"] if "\u4e00" <= c <= "\u9fff"})
    records, groups = with_near_copies(adgen, ["summary"], chinese_edit(alphabet), seed=5)
    found = {}
    for shingles in ("auto", "word"):
        dups = _run(tmp_path, records, ["content", "summary"], f"  compare: summary\n  exact: false\n  near: {{shingles: {shingles}}}")
        found[shingles] = scores(_clusters(dups), _truth(groups))[1]
    assert found["auto"] >= AIM and found["word"] < 0.5, found


def test_same_input_same_kept_set(tmp_path: Path) -> None:
    records, _groups = _english(["instruction", "input"])
    runs = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        dups = _run(tmp_path / str(i), records, ["instruction", "input", "output"], "  compare: prompt")
        runs.append((dups.dropped.tolist(), dups.kept.tolist(), dups.similarity.tolist()))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) > 100


def _shipped(fmt: str) -> tuple[list[dict[str, Any]], list[int], int]:
    """A shipped format's real records (minus their own near-copies), copies whose question differs by one word (one
    character in Chinese) with the same answer, and records that repeat a question with another record's answer.
    Returns the records, their truth groups and how many of them (the last ones) repeat a question."""
    if fmt == "alpaca":
        rows = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))
        question, answer = ["instruction", "input"], "output"
        vocabulary = sorted({w for r in rows for w in r["output"].split() if w.isalpha()})
        edit = one_word_edit(vocabulary)
    else:
        rows = [json.loads(line) for line in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()]
        question, answer = ["content"], "summary"
        edit = one_char_edit(sorted({c for r in rows for c in r["summary"] if "\u4e00" <= c <= "\u9fff"}))
    base = [rows[i] for i in distinct(["\n".join(r[f] for f in [*question, answer]) for r in rows])]
    base, donors = base[:-100], base[-100:]  # donors' answers appear only in the repeats
    # the editor only sees the question: the copy's answer is the original's, word for word
    records, groups = with_near_copies(base, question[:1], edit, seed=13, most=1)
    repeats = other_answers(base, donors, answer, seed=17)
    return records + repeats, groups + list(range(len(base), len(base) + len(repeats))), len(repeats)


@pytest.mark.parametrize("fmt", ["alpaca", "adgen"])
def test_shipped_formats_catch_question_edits_with_the_same_answer(tmp_path: Path, fmt: str) -> None:
    """The shipped dedup (prompt+response) finds a copy whose question differs by one word and whose answer is the
    same, and keeps apart a question asked twice with different answers."""
    records, groups, repeats = _shipped(fmt)
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    datasets.disable_progress_bars()
    spec = load_spec(FORMATS / f"{fmt}.yaml", {"sources": [{"path": str(data)}]})
    dups = deduplicate(spec, render(spec, Options(), signatures=True))
    found = _clusters(dups)
    precision, recall = scores(found, _truth(groups))
    print(f"{fmt} ({spec.dedup.label}): {len(records)} records, precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= AIM and recall >= AIM, (precision, recall)
    first_repeat = len(records) - repeats
    merged = {(a, b) for a, b in pairs(found) if max(a, b) >= first_repeat}
    assert not merged, f"same question, other answer, merged: {sorted(merged)[:5]}"
