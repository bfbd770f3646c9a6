"""Conversation records: located errors for bad ones (or skipped and counted), what trains (`turns: last`, weights,
roles), truncation by whole turns, boundary drift on a template that lets BPE merge across a turn's edge, and spec
errors. Real glaive function-calling records, copied and broken where a test needs bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_oracle import SHARED, assistant_mask, sharegpt_messages
from conftest import REPO, dsc_cli
from dsc.compiler.errors import RecordError, SpecError

FIELDS = "{conversations: {type: array, required: true}, tools: {type: any}, system: {type: string}}"


@pytest.fixture(scope="module")
def glaive() -> list[dict[str, Any]]:
    return json.loads((SHARED / "glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))[:12]


def _write(tmp_path: Path, records: list[dict[str, Any]], extra: str = "", conversation: str = "", chat: str = "tokenizer",
           tools: str = "tools") -> Path:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    spec = tmp_path / "chat.yaml"
    spec.write_text(
        f"name: chat\nsources: [{{path: chat.jsonl}}]\nfields: {FIELDS}\n"
        f"conversation: {{messages: conversations, layout: sharegpt, tools: {tools}, system: system{conversation}}}\n"
        f"templates: {{chat: {chat}}}\n{extra}",
        encoding="utf-8",
    )
    return spec


def _compile(spec: Path, **overrides: Any):
    from dsc.compiler.pipeline import compile_spec
    from dsc.compiler.spec import load_spec

    return compile_spec(load_spec(spec, overrides))


def _rows(compiled) -> list[dict[str, Any]]:
    rows = [row for split in compiled.splits.values() for row in split]
    return sorted(rows, key=lambda r: int(r["source_id"].rsplit("#", 1)[1]))


def _broken(glaive: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Four good records, then one of each mistake."""
    records = json.loads(json.dumps(glaive[:4]))
    bad_role = json.loads(json.dumps(glaive[4]))
    bad_role["conversations"][1]["from"] = "bot"
    calls = [r for r in glaive if any(m["from"] == "function_call" for m in r["conversations"])]
    bad_args = json.loads(json.dumps(calls[0]))
    call = next(m for m in bad_args["conversations"] if m["from"] == "function_call")
    call["value"] = '{"name": "f", "arguments": {"x": 1'
    no_answer = json.loads(json.dumps(glaive[5]))
    no_answer["conversations"] = no_answer["conversations"][:-1]
    marker = json.loads(json.dumps(glaive[6]))
    marker["conversations"][-1]["value"] += "<|im_end|>"
    return records + [bad_role, bad_args, no_answer, marker]


def test_bad_conversations_are_located_errors(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    spec = _write(tmp_path, _broken(glaive))
    with pytest.raises(RecordError) as caught:
        _compile(spec)
    text = str(caught.value)
    data = tmp_path / "chat.jsonl"
    assert f'{data}:5: conversations[1].from: unknown role "bot"; roles are system, human, gpt, function_call, observation' in text
    assert f"{data}:6: conversations[1].value: tool call is not JSON" in text
    assert f"{data}:7: conversations[" in text and "the last message is user, not assistant" in text
    assert f"{data}:8: conversations[" in text and "assistant text contains the end-of-turn marker '<|im_end|>'" in text
    assert caught.value.exit_code == 1


def test_cli_exits_1_naming_record_and_message(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    spec = _write(tmp_path, _broken(glaive))
    result = dsc_cli("build", str(spec), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 1
    assert "chat.jsonl:5: conversations[1].from: unknown role" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_skip_counts_each_reason(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    compiled = _compile(_write(tmp_path, _broken(glaive), "on_invalid: skip\n"))
    assert compiled.counts["invalid"] == {
        "invalid: conversation: unknown role": 1,
        "invalid: conversation: tool call not JSON": 1,
        "invalid: conversation: does not end with an assistant turn": 1,
        "invalid: conversation: end-of-turn marker in content": 1,
    }
    assert sum(compiled.counts["kept"].values()) == 4


def test_turns_last_trains_only_the_final_answer(tmp_path: Path, glaive: list[dict[str, Any]], hf_tokenizer) -> None:
    multi = [r for r in glaive if sum(m["from"] == "human" for m in r["conversations"]) > 1]
    rows = _rows(_compile(_write(tmp_path, multi, conversation=", train: {turns: last}")))
    assert len(rows) == len(multi)
    for row, record in zip(rows, multi, strict=True):
        messages, tools = sharegpt_messages(record)
        ids = list(hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
        last_query = max(i for i, m in enumerate(messages) if m["role"] == "user")
        head = list(hf_tokenizer.apply_chat_template(messages[: last_query + 1], tools=tools, tokenize=True)["input_ids"])
        mask = [m and t >= len(head) for t, m in enumerate(assistant_mask(ids))]
        assert row["input_ids"] == ids
        assert row["labels"] == [x if m else -100 for x, m in zip(ids, mask, strict=True)]
        assert 0 < sum(mask) < sum(assistant_mask(ids))


def test_system_field_and_user_roles_train(tmp_path: Path, glaive: list[dict[str, Any]], hf_tokenizer) -> None:
    records = [{**r, "system": "You are a helpful assistant."} for r in glaive[:3]]
    rows = _rows(_compile(_write(tmp_path, records, conversation=", train: {roles: [user, assistant]}")))
    for row, record in zip(rows, records, strict=True):
        messages, tools = sharegpt_messages(record)
        messages = [{"role": "system", "content": record["system"]}, *messages]
        ids = list(hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
        assert row["input_ids"] == ids
        trained = [x for x in row["labels"] if x != -100]
        assert len(trained) > sum(assistant_mask(ids))
        for m in messages[1:]:
            if m["role"] == "user":  # each user message's text tokens are trained, as one run
                text = hf_tokenizer(m["content"], add_special_tokens=False)["input_ids"]
                assert any(trained[i : i + len(text)] == text for i in range(len(trained))), m["content"]


def test_truncation_drops_oldest_turns_whole(tmp_path: Path, glaive: list[dict[str, Any]], hf_tokenizer) -> None:
    long = max(glaive, key=lambda r: len(r["conversations"]))
    messages, tools = sharegpt_messages(long)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    full = len(hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"])
    kept = messages[users[-1] :]
    last_turn = list(hf_tokenizer.apply_chat_template(kept, tools=tools, tokenize=True)["input_ids"])
    spec = _write(tmp_path, [long], f"lengths: {{max_length: {len(last_turn) + 1}}}\n")
    compiled = _compile(spec)
    (row,) = _rows(compiled)
    assert compiled.counts["truncated"] == 1 and full > len(last_turn) + 1
    assert row["input_ids"] == last_turn  # tools (in the system turn) stay; the earlier turns went whole
    assert row["labels"] == [x if m else -100 for x, m in zip(last_turn, assistant_mask(last_turn), strict=True)]

    # With a short conversation (no tools) beside it: a build that drops every record is an error of its own.
    short = {k: v for k, v in min(glaive, key=lambda r: len(json.dumps(r))).items() if k != "tools"}
    spec = _write(tmp_path, [long, short], f"lengths: {{max_length: {len(last_turn) + 1}}}\n")
    too_short = _compile(spec, lengths={"max_length": len(last_turn) - 1})
    assert too_short.counts["dropped"] == {"too long: max_length": 1}
    with pytest.raises(RecordError, match=r"chat.jsonl:1: \d+ tokens, longer than lengths.max_length"):
        _compile(spec, lengths={"max_length": len(last_turn) - 1, "overflow": "error"})


def test_truncation_that_cuts_every_trained_turn_drops(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    # Only the first user turn trains (weights), so keeping the latest turns would leave nothing to learn.
    long = json.loads(json.dumps(max(glaive, key=lambda r: len(r["conversations"]))))
    first_answer = next(i for i, m in enumerate(long["conversations"]) if m["from"] != "human")
    for i, m in enumerate(long["conversations"]):
        m["weight"] = 1 if i == first_answer else 0
    short = json.loads(json.dumps(min(glaive, key=lambda r: len(json.dumps(r)))))  # keeps the build from being empty
    for m in short["conversations"]:
        m["weight"] = 1
    spec = _write(tmp_path, [long, short], "lengths: {max_length: 300}\n", conversation=", train: {weight_field: weight}")
    compiled = _compile(spec)
    assert compiled.counts["dropped"] == {"too long: max_length (trained turns cut)": 1}


DRIFTING = (
    "{% for m in messages %}{{ m.role }}:{% if m.role == 'assistant' %} {{ m.content }}<|im_end|>{% else %}{{ m.content }}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def test_tokens_straddling_a_turn_edge_are_counted_and_follow_the_rule(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    from dsc.compiler.tokenizer import qwen3_path
    from tokenizers import Tokenizer

    plain = [r for r in glaive if all(m["from"] in ("human", "gpt") for m in r["conversations"])][:3]
    spec = _write(tmp_path, plain, chat=json.dumps(DRIFTING))
    compiled = _compile(spec)
    rows = _rows(compiled)
    assert compiled.counts["boundary_drift"] == len(plain) == len(rows)
    tok = Tokenizer.from_file(str(qwen3_path() / "tokenizer.json"))
    for row in rows:
        text = row["prompt"] + row["response"]
        enc = tok.encode(text, add_special_tokens=False)
        assert row["input_ids"] == enc.ids
        # "assistant: " ends where the span starts, and BPE merges the space into the answer's first word: that
        # token starts before the span, so it is not trained; the rest of the answer and <|im_end|> are.
        start = len(row["prompt"])
        first = enc.char_to_token(start)
        assert enc.offsets[first][0] < start and row["labels"][first] == -100
        assert row["labels"][first + 1] == enc.ids[first + 1] and row["labels"][-2] == enc.ids[-2]


@pytest.mark.parametrize(
    ("extra", "conversation", "tools", "message"),
    [
        ("", "", "nope", "conversation.tools: 'nope' is not a field"),
        ("lengths: {max_source_length: 10}\n", "", "tools", "lengths.max_source_length: does not apply to conversations"),
        ("", ", roles: {bot: robot}", "tools", "conversation.roles.bot: unknown role 'robot'"),
        ("labels: {turns: all}\n", "", "tools", "labels: conversations set what trains in conversation.train"),
    ],
)
def test_spec_errors_are_located(
    tmp_path: Path, glaive: list[dict[str, Any]], extra: str, conversation: str, tools: str, message: str
) -> None:
    from dsc.compiler.spec import load_spec

    spec = _write(tmp_path, glaive[:1], extra, conversation=conversation, tools=tools)
    with pytest.raises(SpecError, match=message.replace(".", r"\.")) as caught:
        load_spec(spec)
    assert str(spec) + ":" in str(caught.value)


def test_inline_template_and_generation_tags(tmp_path: Path, glaive: list[dict[str, Any]], hf_tokenizer) -> None:
    """An inline chat template with transformers' `{% generation %}` markers renders the same text as the tokenizer's."""
    qwen = hf_tokenizer.chat_template
    marked = qwen.replace('{%- elif message.role == "assistant" %}', '{%- elif message.role == "assistant" %}{% generation %}', 1)
    marked = marked.replace(
        "{{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}",
        "{{- '<|im_end|>\\n' }}{% endgeneration %}\n    {%- elif message.role == \"tool\" %}",
        1,
    )
    assert marked.count("generation %}") == 2
    (tmp_path / "qwen_marked.jinja").write_text(marked, encoding="utf-8")
    ours = _rows(_compile(_write(tmp_path, glaive[:4], chat="{file: qwen_marked.jinja}")))
    theirs = _rows(_compile(_write(tmp_path, glaive[:4])))
    assert [r["input_ids"] for r in ours] == [r["input_ids"] for r in theirs]
    assert [r["labels"] for r in ours] == [r["labels"] for r in theirs]


def test_conversation_needs_a_chat_template(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    import shutil

    from dsc.compiler.spec import load_spec
    from dsc.compiler.tokenizer import qwen3_path

    spec = _write(tmp_path, glaive[:1], chat="tokenizer")
    spec.write_text(spec.read_text().replace("templates: {chat: tokenizer}", "templates: {prompt: x, response: y}"))
    with pytest.raises(SpecError, match=r"chat\.yaml:4: conversation: conversations render with a chat template"):
        load_spec(spec)
    # A tokenizer without a chat template: located at templates.chat, before any record is rendered.
    folder = tmp_path / "plain-tokenizer"
    folder.mkdir()
    shutil.copy(qwen3_path() / "tokenizer.json", folder)
    config = json.loads((qwen3_path() / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    spec = _write(tmp_path, glaive[:1], f"tokenizer: {folder}\n")
    with pytest.raises(SpecError, match=r"chat\.yaml:5: templates\.chat: tokenizer '.*' has no chat template"):
        _compile(spec)


def test_a_render_pool_gives_the_same_outcomes(glaive: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Machines with 4+ cores render large batches in a pool of forked processes: same outcomes, same order."""
    from dsc.compiler.chat import render_chat
    from dsc.compiler.chat.chat_template import load_chat_template
    from dsc.compiler.spec import load_spec
    from dsc.compiler.tokenizer import load_tokenizer

    spec = load_spec(REPO / "formats" / "sharegpt.yaml")
    tmpl = load_chat_template(spec.chat, load_tokenizer(spec.tokenizer, spec), spec.where)
    records = [*glaive, {"conversations": [{"from": "bot", "value": "x"}]}]
    serial = render_chat.render_all(records, spec.chat, tmpl)
    monkeypatch.setattr(render_chat, "PARALLEL_MIN", 2)
    monkeypatch.setattr(render_chat, "POOL_MIN_CORES", 2)
    monkeypatch.setattr(render_chat.os, "cpu_count", lambda: 2)
    pooled = render_chat.render_all(records, spec.chat, tmpl)
    assert pooled == serial and serial[-1].reason == "invalid: conversation: unknown role" and serial[0].payload


def test_a_template_that_refuses_a_record_is_a_located_render_error(tmp_path: Path, glaive: list[dict[str, Any]]) -> None:
    """`raise_exception` (Llama 3's template refuses parallel tool calls this way) fails that record, located."""
    template = (
        "{% if messages|length > 2 %}{{ raise_exception('only single-turn chats') }}{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    records = glaive[4:9]
    single = sum(len(r["conversations"]) == 2 for r in records)
    assert 0 < single < len(records)
    with pytest.raises(RecordError, match=r"chat\.jsonl:\d+: templates\.chat: TemplateError: only single-turn chats"):
        _compile(_write(tmp_path, records, chat=json.dumps(template)))
    compiled = _compile(_write(tmp_path, records, "on_invalid: skip\n", chat=json.dumps(template)))
    assert compiled.counts["invalid"] == {"render: templates.chat": len(records) - single}
    assert sum(compiled.counts["kept"].values()) == single
