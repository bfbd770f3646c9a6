"""The other families' real chat templates load offline and render real tool-calling conversations (glaive_toolcall_zh).

Every conversation is rendered with each family's template through transformers' apply_chat_template: the text holds
every message and one role marker per turn, the ids are the text's own encoding (special tokens as single ids), they
decode back to the text, and dsc's own tokenizer loader reads the same folder to the same ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_fixtures import FAMILIES
from chat_fixtures import glaive_conversations as _glaive
from dsc.compiler.spec import TokenizerSpec
from dsc.compiler.tokenizer import load_tokenizer

# The turn markers each family's template writes, per OpenAI role ("call": an assistant turn that calls a tool).
MARKERS = {
    "llama3": {
        "user": "<|start_header_id|>user<|end_header_id|>\n\n",
        "assistant": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "call": "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": ",
        "tool": "<|start_header_id|>ipython<|end_header_id|>\n\n",
    },
    "mistral": {"user": "[INST]", "assistant": "[/INST]", "call": "[TOOL_CALLS][", "tool": "[TOOL_RESULTS]"},
}
SPECIAL = {"llama3": ["<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"], "mistral": ["<s>", "[INST]", "[/INST]", "</s>"]}


@pytest.fixture(scope="module")
def conversations() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    return _glaive()


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, chat_family) -> tuple[str, Path, Any]:
    return request.param, *chat_family(request.param)


def _alternates(messages: list[dict[str, Any]]) -> bool:
    """Mistral's rule: user and plain assistant turns alternate, tool calls and tool results aside."""
    plain = [m["role"] for m in messages if m["role"] != "tool" and not m.get("tool_calls")]
    return all(role == ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(plain))


def test_fixture_folder_is_a_complete_tokenizer(family: tuple[str, Path, Any]) -> None:
    name, folder, tok = family
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok.chat_template == config["chat_template"] and "tools" in tok.chat_template
    for token_id, token in config["added_tokens_decoder"].items():
        assert tok.convert_tokens_to_ids(token["content"]) == int(token_id)
    for special in SPECIAL[name]:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special


def test_tool_conversations_render_with_every_message_and_role(family: tuple[str, Path, Any], conversations: list) -> None:
    name, _folder, tok = family
    markers = MARKERS[name]
    rendered = refused = 0
    for messages, tools in conversations:
        try:
            text = tok.apply_chat_template(messages, tools=tools or None, tokenize=False)
        except Exception as exc:  # noqa: BLE001 - only the template's own rule may refuse a conversation
            assert name == "mistral" and "alternate" in str(exc) and not _alternates(messages)
            refused += 1
            continue
        rendered += 1
        for m in messages:
            if m.get("tool_calls"):
                call = m["tool_calls"][0]["function"]
                assert f'"name": "{call["name"]}"' in text
                assert json.dumps(call["arguments"], ensure_ascii=False) in text
            elif m["role"] == "tool":
                assert m["content"] in text or json.dumps(m["content"], ensure_ascii=False) in text
            else:
                assert m["content"].strip() in text
        calls = sum(1 for m in messages if m.get("tool_calls"))
        assert text.count(markers["call"]) == calls
        assert text.count(markers["tool"]) == sum(1 for m in messages if m["role"] == "tool")
        user_turns = sum(1 for m in messages if m["role"] == "user")
        if name == "llama3":  # the tool list goes into the first user turn; every assistant turn has its own header
            assert text.count(markers["user"]) == user_turns
            assert text.count(markers["assistant"]) == sum(1 for m in messages if m["role"] == "assistant")
        else:
            assert text.count(markers["user"]) == text.count(markers["assistant"]) == user_turns
            assert ("[AVAILABLE_TOOLS]" in text) == bool(tools)
    assert rendered + refused == len(conversations) == 300
    assert refused <= 2  # two glaive records have two assistant turns in a row


def test_ids_are_the_texts_encoding_and_decode_back(family: tuple[str, Path, Any], conversations: list) -> None:
    name, folder, tok = family
    dsc_tok = load_tokenizer(TokenizerSpec(name=str(folder)))
    assert dsc_tok.eos_id == tok.eos_token_id
    texts, ids = [], []
    for messages, tools in conversations[:60]:
        if not _alternates(messages):
            continue
        texts.append(tok.apply_chat_template(messages, tools=tools or None, tokenize=False))
        ids.append(tok.apply_chat_template(messages, tools=tools or None, tokenize=True, return_dict=False))
    assert len(texts) >= 59
    encoded = dsc_tok.backend.encode_batch_fast(texts, add_special_tokens=False)
    for text, chat_ids, enc in zip(texts, ids, encoded, strict=True):
        assert chat_ids == tok(text, add_special_tokens=False)["input_ids"] == enc.ids
        assert tok.decode(chat_ids) == text
        assert chat_ids[0] == tok.convert_tokens_to_ids(SPECIAL[name][0])  # the template writes the BOS itself
