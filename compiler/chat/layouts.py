"""Record -> OpenAI-shaped messages, the shape chat templates expect (and transformers' `apply_chat_template` takes).

- `openai`: `role`/`content` (a string, or typed parts `[{type: text, text}]`), `tool_calls[].function.{name,
  arguments}` (arguments a JSON text or an object), `tool` messages with `tool_call_id`/`name`, reasoning under
  `reasoning_content` (or `reasoning`/`thinking`).
- `sharegpt`: `from`/`value`; `function_call` holds a call `{name, arguments}` (or a list of them) as JSON and becomes
  an assistant message with `tool_calls`; `observation` is a `tool` message.
- `parts` (LLaMA-Factory): `content: [{type: text|reasoning|tool_call, value}]`.

Tool-call arguments become objects (as transformers expects); tools given as bare function schemas (`{name,
description, parameters}`) are wrapped OpenAI-style as `{type: function, function: ...}`; calls without an id get one
and tool results the id of the call they answer (`_link_calls`). Every problem is a
`LayoutError` naming the message index and the key, with a short reason that the build counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dsc.compiler.chat.chat_spec import TOOL_CALL, ChatSpec

REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_KEPT_KEYS = ("tool_call_id", "name")


class LayoutError(Exception):
    """A record whose conversation cannot be read: `where` is e.g. `conversations[3].value`."""

    def __init__(self, reason: str, where: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.where = where


@dataclass
class Conversation:
    """A record's messages in OpenAI shape, its tools, and which messages train."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    train: list[bool]


def _arguments(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise LayoutError(
                "tool call arguments not JSON", where, f"tool call arguments are not JSON: {exc.msg}: {value[:60]!r}"
            ) from None
    if not isinstance(value, dict):
        raise LayoutError(
            "tool call arguments not an object", where, f"tool call arguments must be a JSON object, got {type(value).__name__}"
        )
    return value


def _tool_call(call: Any, where: str) -> dict[str, Any]:
    """One call as `{type: function, function: {name, arguments: object}}` (an `id` is kept)."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError as exc:
            raise LayoutError("tool call not JSON", where, f"tool call is not JSON: {exc.msg}: {call[:60]!r}") from None
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise LayoutError("tool call without a name", where, "a tool call needs a name: {name, arguments}")
    out: dict[str, Any] = {"type": "function", "function": {"name": fn["name"], "arguments": _arguments(fn.get("arguments", {}), where)}}
    if isinstance(call, dict) and "id" in call:
        out["id"] = call["id"]
    return out


def _calls(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise LayoutError("tool call not JSON", where, f"tool call is not JSON: {exc.msg}: {value[:60]!r}") from None
    return [_tool_call(c, where) for c in (value if isinstance(value, list) else [value])]


def _text(value: Any, where: str, parts_key: str) -> str:
    """A content value as text: a string, None (empty), or typed text parts joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get(parts_key), str)):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise LayoutError("content part not text", f"{where}[{j}]", f"content part of type '{kind}' is not supported here")
            texts.append(part[parts_key])
        return "".join(texts)
    raise LayoutError("content not text", where, f"content must be text, got {type(value).__name__}")


def _typed_parts(value: Any, where: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    """LLaMA-Factory's typed parts: (text, reasoning, tool calls)."""
    if isinstance(value, str):
        return value, None, []
    if not isinstance(value, list):
        raise LayoutError("content not typed parts", where, f"content must be a list of {{type, value}} parts, got {type(value).__name__}")
    text, reasoning, calls = [], [], []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        body = part.get("value") if isinstance(part, dict) else None
        if kind not in ("text", "reasoning", "tool_call") or not isinstance(body, str):
            raise LayoutError(
                "content part unknown", f"{where}[{j}]", f"a part is {{type: text|reasoning|tool_call, value: text}}, got {_short(part)}"
            )
        if kind == "tool_call":
            calls.extend(_calls(body, f"{where}[{j}].value"))
        else:
            (text if kind == "text" else reasoning).append(body)
    return "".join(text), "".join(reasoning) if reasoning else None, calls


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(raw: Any, i: int, chat: ChatSpec, roles: dict[str, str]) -> dict[str, Any]:
    at = f"{chat.messages}[{i}]"
    if not isinstance(raw, dict):
        raise LayoutError("message not an object", at, f"a message must be an object, got {_short(raw)}")
    source_role = raw.get(chat.role_key)
    role = roles.get(source_role) if isinstance(source_role, str) else None
    if role is None:
        raise LayoutError("unknown role", f"{at}.{chat.role_key}", f"unknown role {_short(source_role)}; roles are {', '.join(roles)}")
    where = f"{at}.{chat.content_key}"
    content = raw.get(chat.content_key)
    if role == TOOL_CALL:
        return {"role": "assistant", "content": "", "tool_calls": _calls(content, where)}
    message: dict[str, Any] = {"role": role}
    if chat.layout == "parts":
        message["content"], reasoning, calls = _typed_parts(content, where)
    else:
        message["content"] = _text(content, where, "text")
        reasoning = next((raw[k] for k in REASONING_KEYS if isinstance(raw.get(k), str)), None)
        calls = [_tool_call(c, f"{at}.tool_calls[{j}]") for j, c in enumerate(raw.get("tool_calls") or [])]
    if reasoning is not None and role == "assistant":
        message["reasoning_content"] = reasoning
    if calls:
        if role != "assistant":
            raise LayoutError("tool call outside assistant", where, f"only assistant messages call tools, not {role}")
        message["tool_calls"] = calls
    message.update({k: raw[k] for k in _KEPT_KEYS if k in raw and role == "tool"})
    return message


def _said(message: dict[str, Any], key: str) -> str:
    """A message's text under `key` (tool calls as their JSON), for the end-of-turn marker check."""
    value = message.get(key) or ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _tools(value: Any, where: str) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise LayoutError("tools not JSON", where, f"tools are not JSON: {exc.msg}") from None
    if value is None:
        return None
    value = value if isinstance(value, list) else [value]
    if not all(isinstance(t, dict) for t in value):
        raise LayoutError("tools not objects", where, "tools must be a list of function schemas (objects)")
    return [t if "type" in t or "name" not in t else {"type": "function", "function": t} for t in value]


def to_conversation(record: dict[str, Any], chat: ChatSpec, end_of_turn: str) -> Conversation:
    """Read one record's conversation (values already parsed from JSON); raise LayoutError on the first problem."""
    raw = record.get(chat.messages)
    if not isinstance(raw, list) or not raw:
        raise LayoutError("empty conversation", chat.messages, "a conversation needs at least one message")
    roles = dict(chat.roles)
    messages = [_message(m, i, chat, roles) for i, m in enumerate(raw)]
    weights = [m.get(chat.weight_field) if chat.weight_field and isinstance(m, dict) else None for m in raw]
    system = record.get(chat.system) if chat.system else None
    if system:
        if messages[0]["role"] == "system":
            raise LayoutError(
                "two system messages", chat.system, f"field '{chat.system}' and the conversation's first message are both a system message"
            )
        messages.insert(0, {"role": "system", "content": system})
        weights.insert(0, None)
    offset = 1 if system else 0
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and any(end_of_turn in _said(m, k) for k in ("content", "reasoning_content", "tool_calls")):
            raise LayoutError(
                "end-of-turn marker in content",
                f"{chat.messages}[{i - offset}]",
                f"assistant text contains the end-of-turn marker {end_of_turn!r}",
            )
    if messages[-1]["role"] != "assistant":
        raise LayoutError(
            "does not end with an assistant turn",
            f"{chat.messages}[{len(raw) - 1}]",
            f"the last message is {messages[-1]['role']}, not assistant",
        )
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    train = [
        m["role"] in chat.train_roles and (w is None or bool(w)) and (chat.turns == "all" or i > last_user)
        for i, (m, w) in enumerate(zip(messages, weights, strict=True))
    ]
    tools = _tools(record.get(chat.tools), chat.tools) if chat.tools else None
    _link_calls(messages)
    return Conversation(messages=messages, tools=tools, train=train)


def _link_calls(messages: list[dict[str, Any]]) -> None:
    """Give tool calls without an id one (`call` + the message's index, 9 characters: Mistral's templates require ids
    of that length, ShareGPT data has none) and tool results without a `tool_call_id` the id of the latest call."""
    latest = None
    for i, m in enumerate(messages):
        for j, call in enumerate(m.get("tool_calls") or ()):
            latest = call.setdefault("id", f"call{i:03d}{j:02d}")
        if m["role"] == "tool" and latest is not None:
            m.setdefault("tool_call_id", latest)
