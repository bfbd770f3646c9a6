"""Rendering a conversation with the model's chat template, in the sandbox, exactly as `apply_chat_template` would.

The template sees `messages`, `tools`, `documents` (None), `add_generation_prompt` and the tokenizer's named special
tokens (`bos_token`, `eos_token`, ...), as transformers passes them; a message's reasoning is also given as
`thinking` (transformers' alias, which gpt-oss templates read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsc.compiler.chat.chat_spec import ChatSpec
from dsc.compiler.errors import Problem, SpecError
from dsc.compiler.sandbox import chat_template
from dsc.compiler.tokenizer import LoadedTokenizer, special_tokens, tokenizer_chat_template


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template's text (what passes pickle into workers) and the end-of-turn marker its assistant turns end with."""

    text: str
    end_of_turn: str
    special_tokens: tuple[tuple[str, str], ...] = ()

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, add_generation_prompt: bool = False) -> str:
        """The template's text for these messages (raises jinja2.TemplateError, TypeError, ... on a bad record)."""
        chat = [
            {"thinking": m["reasoning_content"], **m} if m.get("reasoning_content") is not None and "thinking" not in m else m
            for m in messages
        ]
        return chat_template(self.text).render(
            **dict(self.special_tokens), messages=chat, tools=tools, documents=None, add_generation_prompt=add_generation_prompt
        )


def load_chat_template(chat: ChatSpec, tok: LoadedTokenizer, where: Any) -> ChatTemplate:
    """The spec's chat template, or the tokenizer's (`templates: {chat: tokenizer}`); the end-of-turn marker is
    `conversation.end_of_turn` or the tokenizer's EOS. `where(*path)` locates a problem in the spec."""
    text = chat.template.text if chat.template is not None else None
    if text is None:
        text = tokenizer_chat_template(tok)
        if text is None:
            raise SpecError(
                Problem(
                    f"templates.chat: tokenizer '{tok.name}' has no chat template; give one with templates.chat: {{file: ...}}",
                    where("templates", "chat"),
                )
            )
        chat_template(text)  # a broken template from a tokenizer is reported here, not per record
    return ChatTemplate(text=text, end_of_turn=chat.end_of_turn or tok.eos_token, special_tokens=tuple(special_tokens(tok).items()))
