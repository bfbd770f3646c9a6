"""The exactness contract for conversations, on EVERY record of three real data sets with Qwen3's own chat template:
`input_ids` equal transformers' `apply_chat_template(messages, tools=tools, tokenize=True)` token for token, and
`labels` equal `input_ids` on exactly the assistant turns (from the `assistant` header's end through `<|im_end|>`) and
-100 elsewhere.

The oracle is independent of dsc: the messages are converted from the raw records here, plainly, and the assistant
turns are found on the token ids (`<|im_start|>assistant\\n` ... `<|im_end|>`), not from dsc's character spans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

SHARED = REPO.parent / "shared" / "data"
IM_START, IM_END, ASSISTANT, NEWLINE = 151644, 151645, 77091, 198


@pytest.fixture(scope="module")
def hf_tokenizer():
    from dsc.compiler.tokenizer import qwen3_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_path()))


def _build(tmp_path: Path, source: str, fields: str, conversation: str) -> dict[str, dict[str, Any]]:
    """Build a spec over a shared data file (no split, no length limit); rows by source_id."""
    from dsc.compiler.pipeline import compile_spec
    from dsc.compiler.spec import load_spec

    spec_file = tmp_path / "chat.yaml"
    spec_file.write_text(
        f"name: chat\nsources: [{{path: {SHARED / source}}}]\nfields: {fields}\n"
        f"conversation: {conversation}\ntemplates: {{chat: tokenizer}}\n",
        encoding="utf-8",
    )
    compiled = compile_spec(load_spec(spec_file))
    assert compiled.counts["invalid"] == {} and compiled.counts["dropped"] == {}
    return {row["source_id"]: row for row in compiled.splits["train"]}


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def _sharegpt(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    roles = {"human": "user", "gpt": "assistant", "observation": "tool"}
    messages = []
    for m in record["conversations"]:
        if m["from"] == "function_call":
            messages.append({"role": "assistant", "content": "", "tool_calls": [_tool_call(json.loads(m["value"]))]})
        else:
            messages.append({"role": roles[m["from"]], "content": m["value"]})
    return messages, [{"type": "function", "function": t} for t in json.loads(record["tools"])]


def _parts(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    messages = []
    for m in record["messages"]:
        message: dict[str, Any] = {"role": m["role"], "content": "".join(p["value"] for p in m["content"] if p["type"] == "text")}
        reasoning = [p["value"] for p in m["content"] if p["type"] == "reasoning"]
        calls = [_tool_call(json.loads(p["value"])) for p in m["content"] if p["type"] == "tool_call"]
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
    return messages, json.loads(record["tools"]) if record.get("tools") else None


def _assistant_mask(ids: list[int]) -> list[bool]:
    """True on every token of an assistant turn: after `<|im_start|>assistant\\n`, through the turn's `<|im_end|>`."""
    mask, inside = [False] * len(ids), False
    for t, token in enumerate(ids):
        if inside:
            mask[t] = True
            inside = token != IM_END
        elif t >= 2 and ids[t - 2 : t + 1] == [IM_START, ASSISTANT, NEWLINE]:
            inside = True
    return mask


def _check(rows: dict[str, dict[str, Any]], records: list[dict[str, Any]], name: str, convert, tok) -> None:
    assert len(rows) == len(records)
    for r, record in enumerate(records):
        row = rows[f"{name}#{r}"]
        messages, tools = convert(record)
        expected = list(tok.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
        assert row["input_ids"] == expected, f"{name}#{r}: ids differ from apply_chat_template"
        mask = _assistant_mask(expected)
        assert any(mask), f"{name}#{r}: no assistant turn"
        assert row["labels"] == [t if m else -100 for t, m in zip(expected, mask, strict=True)], f"{name}#{r}: labels"
        assert row["prompt"] + row["response"] == tok.apply_chat_template(messages, tools=tools, tokenize=False)


def test_sharegpt_function_calls_every_record(tmp_path: Path, hf_tokenizer) -> None:
    rows = _build(
        tmp_path,
        "glaive_toolcall_zh_demo.json",
        "{conversations: {type: array, required: true}, tools: {type: any}}",
        "{messages: conversations, layout: sharegpt, tools: tools}",
    )
    records = json.loads((SHARED / "glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))
    _check(rows, records, "glaive_toolcall_zh_demo.json", _sharegpt, hf_tokenizer)


def test_typed_parts_reasoning_and_tool_calls_every_record(tmp_path: Path, hf_tokenizer) -> None:
    rows = _build(
        tmp_path,
        "reason_tool_use_demo_50.jsonl",
        "{messages: {type: array, required: true}, tools: {type: any}}",
        "{messages: messages, layout: parts, tools: tools}",
    )
    lines = (SHARED / "reason_tool_use_demo_50.jsonl").read_text(encoding="utf-8").splitlines()
    _check(rows, [json.loads(x) for x in lines], "reason_tool_use_demo_50.jsonl", _parts, hf_tokenizer)


def test_loss_weight_parts_every_record(tmp_path: Path, hf_tokenizer) -> None:
    rows = _build(
        tmp_path,
        "v1_sft_demo.jsonl",
        "{messages: {type: array, required: true}}",
        "{messages: messages, layout: parts, train: {weight_field: loss_weight}}",
    )
    lines = (SHARED / "v1_sft_demo.jsonl").read_text(encoding="utf-8").splitlines()
    _check(rows, [json.loads(x) for x in lines], "v1_sft_demo.jsonl", _parts, hf_tokenizer)
