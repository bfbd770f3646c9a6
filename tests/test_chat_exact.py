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

from chat_oracle import SHARED, assistant_mask, parts_messages, sharegpt_messages
from conftest import FORMATS


def _build(spec_file: Path, span_fallback: int = 0) -> dict[str, dict[str, Any]]:
    """Build a spec with every record in train and no length limit that bites; rows by source_id."""
    from dsc.compiler.pipeline import compile_spec
    from dsc.compiler.spec import load_spec

    compiled = compile_spec(load_spec(spec_file, {"split": {"validation": 0}, "lengths": {"max_length": 100_000}}))
    assert compiled.counts["invalid"] == {} and compiled.counts["dropped"] == {}
    assert compiled.counts["span_fallback"] == span_fallback and compiled.counts["boundary_drift"] == 0
    return {row["source_id"]: row for row in compiled.splits["train"]}


def _spec(tmp_path: Path, source: str, fields: str, conversation: str) -> Path:
    spec_file = tmp_path / "chat.yaml"
    spec_file.write_text(
        f"name: chat\nsources: [{{path: {SHARED / source}}}]\nfields: {fields}\n"
        f"conversation: {conversation}\ntemplates: {{chat: tokenizer}}\n",
        encoding="utf-8",
    )
    return spec_file


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _check(rows: dict[str, dict[str, Any]], records: list[dict[str, Any]], name: str, convert, tok) -> None:
    assert len(rows) == len(records)
    for r, record in enumerate(records):
        row = rows[f"{name}#{r}"]
        messages, tools = convert(record)
        expected = list(tok.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
        assert row["input_ids"] == expected, f"{name}#{r}: ids differ from apply_chat_template"
        mask = assistant_mask(expected)
        assert any(mask), f"{name}#{r}: no assistant turn"
        assert row["labels"] == [t if m else -100 for t, m in zip(expected, mask, strict=True)], f"{name}#{r}: labels"
        assert row["prompt"] + row["response"] == tok.apply_chat_template(messages, tools=tools, tokenize=False)


def test_builtin_sharegpt_function_calls_every_record(hf_tokenizer) -> None:
    rows = _build(FORMATS / "sharegpt.yaml")
    records = json.loads((SHARED / "glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))
    _check(rows, records, "glaive_toolcall_zh_demo.json", sharegpt_messages, hf_tokenizer)


def test_builtin_llamafactory_messages_reasoning_and_tool_calls_every_record(hf_tokenizer) -> None:
    # 16 conversations have two user queries: Qwen3 then hides the first query's reasoning, so those turns are placed
    # by the generation-prompt rule (and still match apply_chat_template exactly).
    rows = _build(FORMATS / "llamafactory-messages.yaml", span_fallback=16)
    _check(rows, _jsonl(SHARED / "reason_tool_use_demo_50.jsonl"), "reason_tool_use_demo_50.jsonl", parts_messages, hf_tokenizer)


def test_builtin_openai_messages_every_record(hf_tokenizer) -> None:
    def convert(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        messages = json.loads(json.dumps(record["messages"]))
        for m in messages:
            for call in m.get("tool_calls", []):
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])  # transformers takes objects
        return messages, record["tools"]

    rows = _build(FORMATS / "openai-messages.yaml", span_fallback=16)
    _check(rows, _jsonl(FORMATS / "data" / "openai_messages_demo.jsonl"), "openai_messages_demo.jsonl", convert, hf_tokenizer)


def test_loss_weight_parts_every_record(tmp_path: Path, hf_tokenizer) -> None:
    spec = _spec(
        tmp_path,
        "v1_sft_demo.jsonl",
        "{messages: {type: array, required: true}}",
        "{messages: messages, layout: parts, train: {weight_field: loss_weight}}",
    )
    _check(_build(spec), _jsonl(SHARED / "v1_sft_demo.jsonl"), "v1_sft_demo.jsonl", parts_messages, hf_tokenizer)
