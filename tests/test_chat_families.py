"""The exactness contract with two more model families' real chat templates (tests/fixtures/chat/: Llama 3.1 with its
own tokenizer, Mistral Nemo's template with its control tokens; README there says where each comes from), on every
record of the real glaive function-calling set built with the built-in `sharegpt` format.

ids must equal transformers' `apply_chat_template(messages, tools=tools, tokenize=True)`; labels must be the ids on
exactly the assistant turns, found here on the token ids with each family's own markers (independent of dsc's
character spans): Llama 3 trains from after `<|start_header_id|>assistant<|end_header_id|>\\n\\n` through `<|eot_id|>`,
Mistral from after `[/INST]` or `[/TOOL_RESULTS]` through `</s>`.
"""

from __future__ import annotations

import json

import pytest
from chat_fixtures import GLAIVE, glaive_to_openai
from conftest import FORMATS


def _find(ids: list[int], pattern: list[int], start: int) -> int:
    """The index just after the next occurrence of `pattern` in `ids` from `start` (-1 if none)."""
    for t in range(start, len(ids) - len(pattern) + 1):
        if ids[t : t + len(pattern)] == pattern:
            return t + len(pattern)
    return -1


def turns_mask(ids: list[int], starts: list[list[int]], end: list[int]) -> list[bool]:
    """True from after any `starts` marker through the next `end` marker (inclusive): the assistant turns."""
    mask, t = [False] * len(ids), 0
    while True:
        after = [a for a in (_find(ids, s, t) for s in starts) if a >= 0]
        if not after:
            return mask
        begin = min(after)
        stop = _find(ids, end, begin)
        if stop < 0:
            return mask
        mask[begin:stop] = [True] * (stop - begin)
        t = stop


FAMILIES = {
    "llama3": (["<|start_header_id|>assistant<|end_header_id|>\n\n"], "<|eot_id|>"),
    "mistral": (["[/INST]", "[/TOOL_RESULTS]"], "</s>"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sharegpt_every_record_with_another_family_template(family: str, chat_family) -> None:
    from dsc.compiler.pipeline import compile_spec
    from dsc.compiler.spec import load_spec

    folder, tok = chat_family(family)
    starts, end = ([tok.encode(s, add_special_tokens=False) for s in FAMILIES[family][0]],
                   tok.encode(FAMILIES[family][1], add_special_tokens=False))
    overrides = {"tokenizer": str(folder), "on_invalid": "skip", "split": {"validation": 0}, "lengths": {"max_length": 100_000}}
    compiled = compile_spec(load_spec(FORMATS / "sharegpt.yaml", overrides))
    rows = {row["source_id"]: row for row in compiled.splits["train"]}
    records = json.loads(GLAIVE.read_text(encoding="utf-8"))
    refused = 0
    for r, record in enumerate(records):
        messages, tools = glaive_to_openai(record)
        try:
            expected = list(tok.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
        except Exception:  # noqa: BLE001 - the template's own raise_exception (Mistral: roles must alternate)
            refused += 1
            assert f"glaive_toolcall_zh_demo.json#{r}" not in rows  # dsc refuses what the template refuses
            continue
        row = rows[f"glaive_toolcall_zh_demo.json#{r}"]
        assert row["input_ids"] == expected, f"{family} #{r}: ids differ from apply_chat_template"
        mask = turns_mask(expected, starts, end)
        assert any(mask), f"{family} #{r}: no assistant turn"
        assert row["labels"] == [t if m else -100 for t, m in zip(expected, mask, strict=True)], f"{family} #{r}: labels"
    assert len(rows) == len(records) - refused and sum(compiled.counts["invalid"].values()) == refused
    assert compiled.counts["boundary_drift"] == 0 and compiled.counts["dropped"] == {}
    print(f"{family}: {len(rows)} records exact, {refused} refused by the template itself")  # shown with -s


def test_turns_mask_finds_turns_between_markers() -> None:
    ids = [1, 7, 8, 2, 3, 9, 4, 7, 8, 5, 9, 6]
    assert turns_mask(ids, [[7, 8]], [9]) == [False, False, False, True, True, True, False, False, False, True, True, False]
