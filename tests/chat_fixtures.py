"""Real chat templates of other model families (tests/fixtures/chat/<family>/), as tokenizer folders, and real tool-calling
conversations to render with them.

A family whose real tokenizer is too big for the repo ships only its tokenizer_config.json (real chat template, the
family's special tokens in `added_tokens_decoder`); `tokenizer_folder` pairs it with Qwen3's tokenizer.json, the
family's special tokens added to it as added tokens with exactly the ids the config lists, so `tokenizers` alone and
transformers' AutoTokenizer read the same vocabulary. tests/fixtures/chat/README.md says where every file comes from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dsc.compiler.tokenizer import qwen3_path
from tokenizers import Tokenizer

CHAT = Path(__file__).resolve().parent / "fixtures" / "chat"
FAMILIES = ("llama3", "mistral")
_ADDED_KEYS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")
GLAIVE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "glaive_toolcall_zh_demo.json"


def tokenizer_folder(family: str, scratch: Path) -> Path:
    """A folder AutoTokenizer.from_pretrained (and dsc's `tokenizer:`) can load for `family`; built under `scratch` if needed."""
    source = CHAT / family
    if (source / "tokenizer.json").is_file():
        return source
    folder = scratch / family
    if (folder / "tokenizer.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    data = json.loads((qwen3_path() / "tokenizer.json").read_text(encoding="utf-8"))
    taken = {token["content"] for token in data["added_tokens"]}
    for token_id, token in sorted(config["added_tokens_decoder"].items(), key=lambda kv: int(kv[0])):
        if token["content"] not in taken:
            data["added_tokens"].append({"id": int(token_id), **{k: token[k] for k in _ADDED_KEYS}})
    backend = Tokenizer.from_str(json.dumps(data))
    for token_id, token in config["added_tokens_decoder"].items():
        if backend.token_to_id(token["content"]) != int(token_id):
            raise ValueError(f"{source}: {token['content']} has id {backend.token_to_id(token['content'])}, the config says {token_id}")
    backend.save(str(folder / "tokenizer.json"))
    shutil.copy(source / "tokenizer_config.json", folder / "tokenizer_config.json")
    return folder


def glaive_to_openai(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One glaive_toolcall (ShareGPT) record as OpenAI chat messages and tools, the shape apply_chat_template takes.

    Tool-call arguments become mappings (transformers' convention; the templates `tojson` them) and calls get
    9-character ids `call00100`... as dsc gives calls without one (Mistral's template requires them), the `tool`
    reply carrying its call's id.
    """
    roles = {"human": "user", "gpt": "assistant", "observation": "tool"}
    messages: list[dict[str, Any]] = []
    last_call = ""
    for turn in record["conversations"]:
        if turn["from"] == "function_call":
            call = json.loads(turn["value"])
            last_call = f"call{len(messages):03d}00"  # dsc's ids for calls without one: message index, call index
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": last_call, "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]})
        elif turn["from"] == "observation":
            messages.append({"role": "tool", "tool_call_id": last_call, "content": turn["value"]})
        else:
            messages.append({"role": roles[turn["from"]], "content": turn["value"]})
    tools = [{"type": "function", "function": tool} for tool in json.loads(record["tools"] or "[]")]
    return messages, tools


def glaive_conversations() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Every record of the real glaive_toolcall_zh_demo set, converted by `glaive_to_openai`."""
    return [glaive_to_openai(r) for r in json.loads(GLAIVE.read_text(encoding="utf-8"))]
