"""Make formats/data/openai_messages_demo.jsonl: LLaMA-Factory's reason_tool_use_demo_50 in OpenAI chat shape.

Each typed-parts message becomes an OpenAI message: text parts -> `content`, reasoning parts -> `reasoning_content`,
tool_call parts -> `tool_calls` with an `id` and the arguments as a JSON string (as the OpenAI API returns them); each
tool message gets the `tool_call_id` and `name` of the call it answers (calls are answered in order). `tools` becomes
a list (it is a JSON string in the source).

    python scripts/make_openai_messages.py ../shared/data/reason_tool_use_demo_50.jsonl formats/data/openai_messages_demo.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def convert(record: dict[str, Any], index: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # calls not answered yet, oldest first
    for m in record["messages"]:
        parts = m["content"]
        out: dict[str, Any] = {"role": m["role"], "content": "".join(p["value"] for p in parts if p["type"] == "text")}
        reasoning = [p["value"] for p in parts if p["type"] == "reasoning"]
        if reasoning:
            out["reasoning_content"] = "".join(reasoning)
        calls = []
        for p in parts:
            if p["type"] == "tool_call":
                call = json.loads(p["value"])
                calls.append(
                    {
                        "id": f"call_{index}_{len(messages)}_{len(calls)}",
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
                    }
                )
        if calls:
            out["tool_calls"] = calls
            pending.extend(calls)
        if m["role"] == "tool" and pending:
            answered = pending.pop(0)
            out["tool_call_id"], out["name"] = answered["id"], answered["function"]["name"]
        messages.append(out)
    tools = json.loads(record["tools"]) if record.get("tools") else []
    return {"messages": messages, "tools": tools}


def main(src: str, dst: str) -> None:
    records = [json.loads(line) for line in Path(src).read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [json.dumps(convert(r, i), ensure_ascii=False) for i, r in enumerate(records)]
    Path(dst).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} conversations -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
