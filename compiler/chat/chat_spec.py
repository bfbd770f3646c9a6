"""The spec's `conversation:` section and `templates.chat`, resolved into a frozen `ChatSpec`.

Each layout has its own keys and role names; the spec overrides any of them. Problems are located spec errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsc.compiler.errors import Location, Problem, SpecError
from dsc.compiler.sandbox import chat_environment
from jinja2 import TemplateSyntaxError

if TYPE_CHECKING:
    from dsc.compiler.spec import Template

ROLES = ("system", "user", "assistant", "tool")
TOOL_CALL = "assistant_tool_call"
"""A message whose content is a tool call (or a list of them) as JSON: ShareGPT's `function_call`."""

LAYOUTS: dict[str, dict[str, Any]] = {
    "openai": {"role_key": "role", "content_key": "content", "roles": {r: r for r in ROLES}},
    "sharegpt": {
        "role_key": "from",
        "content_key": "value",
        "roles": {"system": "system", "human": "user", "gpt": "assistant", "function_call": TOOL_CALL, "observation": "tool"},
    },
    "parts": {"role_key": "role", "content_key": "content", "roles": {r: r for r in ROLES}},
}
"""Each layout's message keys and role names (source name -> role)."""


@dataclass(frozen=True)
class ChatSpec:
    messages: str
    layout: str
    role_key: str
    content_key: str
    roles: tuple[tuple[str, str], ...]
    tools: str | None
    system: str | None
    train_roles: tuple[str, ...]
    turns: str
    weight_field: str | None
    end_of_turn: str | None
    template: Template | None
    """The spec's own chat template (inline or a file); None: the tokenizer's."""


def _check_syntax(t: Template, fail: Any) -> None:
    try:
        chat_environment().parse(t.text)
    except TemplateSyntaxError as exc:
        if t.file is not None:
            raise SpecError(Problem(f"{t.key}: template syntax error: {exc.message}", Location(str(t.file), exc.lineno))) from None
        raise fail(("templates", "chat"), f"template syntax error (template line {exc.lineno}): {exc.message}") from None


def parse_chat(data: dict[str, Any], fields: dict[str, str], load: Any, fail: Any) -> ChatSpec:
    """Resolve `conversation:` and `templates.chat`. `fields` maps field names to types, `load(raw, path)` loads a
    spec template (inline or file), `fail(path, message)` makes a located SpecError."""
    raw = data.get("conversation")
    if raw is None:
        raise fail(("templates", "chat"), "templates.chat needs a conversation: section naming the messages field")
    for key in ("prompt", "response", "system", "history"):
        if key in data["templates"]:
            raise fail(("templates", key), "templates.chat renders the whole conversation; remove templates." + key)
    layout = raw.get("layout", "openai")
    defaults = LAYOUTS[layout]
    roles = {**defaults["roles"], **(raw.get("roles") or {})}
    for name, role in roles.items():
        if role not in (*ROLES, TOOL_CALL):
            raise fail(("conversation", "roles", name), f"unknown role '{role}'; roles are {', '.join((*ROLES, TOOL_CALL))}")
    for key, allowed in (("messages", ("array", "any")), ("tools", ("array", "string", "any")), ("system", ("string",))):
        name = raw.get(key)
        if name is None:
            continue
        if name not in fields:
            raise fail(("conversation", key), f"'{name}' is not a field; fields are {', '.join(fields)}")
        if fields[name] not in allowed:
            raise fail(("conversation", key), f"field '{name}' has type {fields[name]}; {key} needs {' or '.join(allowed)}")
    train = raw.get("train") or {}
    chat_raw = data["templates"]["chat"]
    template = None
    if chat_raw != "tokenizer":
        template = load(chat_raw, ("templates", "chat"))
        _check_syntax(template, fail)
    lengths = data.get("lengths") or {}
    for key in ("max_source_length", "max_target_length", "prompt_truncation"):
        if key in lengths:
            raise fail(("lengths", key), "does not apply to conversations (they are cut by whole turns); use max_length")
    overflow = lengths.get("overflow")
    if isinstance(overflow, dict):
        raise fail(("lengths", "overflow"), "conversations have one overflow policy: truncate, drop or error")
    if "labels" in data:
        raise fail(("labels",), "conversations set what trains in conversation.train")
    return ChatSpec(
        messages=raw["messages"],
        layout=layout,
        role_key=raw.get("role_key", defaults["role_key"]),
        content_key=raw.get("content_key", defaults["content_key"]),
        roles=tuple(roles.items()),
        tools=raw.get("tools"),
        system=raw.get("system"),
        train_roles=tuple(train.get("roles", ["assistant"])),
        turns=train.get("turns", "all"),
        weight_field=train.get("weight_field"),
        end_of_turn=raw.get("end_of_turn"),
        template=template,
    )
