"""The cheap checks a candidate instruction passes before novelty: Alpaca's rules, each one configurable.

Defaults reproduce `post_process_gpt3_response`: 4 to 150 words (split on whitespace), none of the blacklisted words
(whole words, any case), no "Write a program" opening, no leading ASCII punctuation, an ASCII first character.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property

ALPACA_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw", "plot",
    "go to", "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip
"""Words that ask for what a text model cannot do (Alpaca's list)."""
ALPACA_PREFIXES = ("Write a program",)

TOO_SHORT = "too short"
TOO_LONG = "too long"
BLACKLISTED = "blacklisted word"
PREFIX = "banned opening"
PUNCTUATION = "leading punctuation"
NON_ASCII = "non-ASCII start"
REASONS = (TOO_SHORT, TOO_LONG, BLACKLISTED, PREFIX, PUNCTUATION, NON_ASCII)


@dataclass(frozen=True)
class Filters:
    """Resolved `filters:`; None, an empty tuple or False turns a rule off."""

    min_words: int | None = 4
    max_words: int | None = 150
    blacklist: tuple[str, ...] = ALPACA_BLACKLIST
    prefixes: tuple[str, ...] = ALPACA_PREFIXES
    leading_punctuation: bool = True
    ascii_start: bool = True

    @cached_property
    def _blacklist(self) -> re.Pattern[str] | None:
        # One alternation with word boundaries matches exactly when one of Alpaca's per-word searches does.
        if not self.blacklist:
            return None
        return re.compile(r"\b(" + "|".join(re.escape(w) for w in self.blacklist) + r")\b", re.IGNORECASE)

    def reject(self, instruction: str) -> str | None:
        """Why an instruction is dropped, or None when it passes every rule."""
        words = len(instruction.split())
        if self.min_words is not None and words < self.min_words:
            return TOO_SHORT
        if self.max_words is not None and words > self.max_words:
            return TOO_LONG
        if self._blacklist is not None and self._blacklist.search(instruction):
            return BLACKLISTED
        if any(instruction.startswith(p) for p in self.prefixes):
            return PREFIX
        if not instruction:
            return TOO_SHORT
        if self.leading_punctuation and instruction[0] in string.punctuation:
            return PUNCTUATION
        if self.ascii_start and not instruction[0].isascii():
            return NON_ASCII
        return None
