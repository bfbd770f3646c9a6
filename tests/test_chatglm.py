"""ChatGLM's ADGEN layouts, byte for byte, against the formats implemented here from their published descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from conftest import DATA, FORMATS
from dsc.compiler.spec import TokenizerSpec
from dsc.compiler.tokenizer import load_tokenizer

import dsc


def chatglm6b_prompt(query: str, history: list[list[str]]) -> str:
    prompt = ""
    for i, (q, a) in enumerate(history):
        prompt += f"[Round {i}]\n问：{q}\n答：{a}\n"
    return prompt + f"[Round {len(history)}]\n问：{query}\n答："


def chatglm2_prompt(query: str, history: list[list[str]]) -> str:
    prompt = ""
    for i, (q, a) in enumerate(history):
        prompt += f"[Round {i + 1}]\n\n问：{q}\n\n答：{a}\n\n"
    return prompt + f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："


def _records() -> list[dict]:
    return [json.loads(line) for line in (DATA / "adgen_chat.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("name", "reference"), [("adgen-chatglm", chatglm6b_prompt), ("adgen-chatglm2", chatglm2_prompt)])
def test_round_framing_byte_for_byte(name: str, reference, tmp_path: Path) -> None:
    package = dsc.build(FORMATS / f"{name}.yaml", output=tmp_path / name).path
    records = _records()
    rows = [r for split in datasets.load_dataset(str(package)).values() for r in split]
    assert len(rows) == len(records)
    histories = {len(r["history"]) for r in records}
    assert histories == {0, 1, 2}
    for row in rows:
        rec = records[int(row["source_id"].split("#")[1])]
        assert row["prompt"] == reference(rec["prompt"], rec["history"])
        assert row["response"] == rec["response"]
        assert "：" in row["prompt"] and ":" not in row["prompt"].replace("[Round", "")


def test_adgen_uses_full_width_colons_and_chatglm_lengths(packages) -> None:
    package = packages("adgen")
    rows = datasets.load_dataset(str(package))["train"]
    first = rows[0]
    assert first["prompt"].startswith("问：") and first["prompt"].endswith("\n答：")
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["spec"]["resolved"]["lengths"]["max_source_length"] == 64
    for row in rows:
        prompt_len = sum(1 for x in row["labels"] if x == -100)
        assert prompt_len <= 64
        assert len(row["input_ids"]) - prompt_len <= 64  # target, EOS included
        assert row["labels"][-1] == row["input_ids"][-1] == manifest["tokenizer"]["eos_id"]


def test_every_assistant_turn_trained_when_asked(tmp_path: Path) -> None:
    unlimited = {"max_source_length": 100_000, "max_target_length": 100_000}
    package = dsc.build(FORMATS / "adgen-chatglm.yaml", output=tmp_path / "all", labels={"turns": "all"}, lengths=unlimited).path
    rows = [r for split in datasets.load_dataset(str(package)).values() for r in split]
    records = _records()
    tok = load_tokenizer(TokenizerSpec())
    checked = 0
    for row in rows:
        rec = records[int(row["source_id"].split("#")[1])]
        if len(rec["history"]) != 2:
            continue
        trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
        text = tok.backend.decode(trained, skip_special_tokens=True)
        # Both earlier answers (with their "\n") and the final one are trained; no question is.
        assert text == rec["history"][0][1] + "\n" + rec["history"][1][1] + "\n" + rec["response"]
        checked += 1
    assert checked == sum(1 for r in records if len(r["history"]) == 2)
