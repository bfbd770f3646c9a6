"""An oracle for conversation tests, independent of dsc: raw records converted to OpenAI messages plainly, and Qwen3's
assistant turns found on the token ids."""

from __future__ import annotations

import json
from typing import Any

from conftest import REPO

SHARED = REPO.parent / "shared" / "data"
IM_START, IM_END, ASSISTANT, NEWLINE = 151644, 151645, 77091, 198


def tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def sharegpt_messages(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    roles = {"human": "user", "gpt": "assistant", "observation": "tool"}
    messages = []
    for m in record["conversations"]:
        if m["from"] == "function_call":
            messages.append({"role": "assistant", "content": "", "tool_calls": [tool_call(json.loads(m["value"]))]})
        else:
            messages.append({"role": roles[m["from"]], "content": m["value"]})
    return messages, [{"type": "function", "function": t} for t in json.loads(record["tools"])]


def parts_messages(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    messages = []
    for m in record["messages"]:
        message: dict[str, Any] = {"role": m["role"], "content": "".join(p["value"] for p in m["content"] if p["type"] == "text")}
        reasoning = [p["value"] for p in m["content"] if p["type"] == "reasoning"]
        calls = [tool_call(json.loads(p["value"])) for p in m["content"] if p["type"] == "tool_call"]
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
    return messages, json.loads(record["tools"]) if record.get("tools") else None


def assistant_mask(ids: list[int]) -> list[bool]:
    """True on every token of an assistant turn: after `<|im_start|>assistant\\n`, through the turn's `<|im_end|>`."""
    mask, inside = [False] * len(ids), False
    for t, token in enumerate(ids):
        if inside:
            mask[t] = True
            inside = token != IM_END
        elif t >= 2 and ids[t - 2 : t + 1] == [IM_START, ASSISTANT, NEWLINE]:
            inside = True
    return mask
