"""Near-copies of real records with controlled edits, and the pair precision/recall of a dedup run against them.

Shared by the dedup quality test and bench/dedup_bench.py, so both measure the same kind of copy. Edits are sized to
the text: case, whitespace and punctuation always change (a copy should survive any of them); words (English) or
characters (Chinese) are replaced only in proportion to the length, because one word replaced in a ten-word record
makes a different record, not a copy of it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from typing import Any

WORDS_PER_REPLACEMENT = 25
"""English: one word replaced per this many words, at most two."""
CHARS_PER_REPLACEMENT = 40
"""Chinese: one character replaced per this many characters, at most three."""
FULL_TO_HALF = {"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")"}
HALF_TO_FULL = {v: k for k, v in FULL_TO_HALF.items()}
_HAN = re.compile(r"[\u4e00-\u9fff]")

Edit = Callable[[str, random.Random], str]


def english_edit(vocabulary: Sequence[str]) -> Edit:
    """An edit for English text: case, whitespace and punctuation noise, and len/25 words (at most 2) replaced."""

    def edit(text: str, rng: random.Random) -> str:
        words = text.split()
        if not words:
            return text
        for i in rng.sample(range(len(words)), min(2, len(words) // WORDS_PER_REPLACEMENT)):
            words[i] = rng.choice([w for w in rng.sample(vocabulary, 5) if w.lower() != words[i].lower()] or ["zebra"])
        case = rng.randrange(3)
        if case == 0:
            words = [w.lower() for w in words]
        elif case == 1:
            words = [w.upper() if rng.random() < 0.2 else w for w in words]
        else:
            words = [w.capitalize() for w in words]
        words = [w.rstrip(".,;:!?") if rng.random() < 0.3 else w for w in words]
        words = [w + "," if rng.random() < 0.05 else w for w in words]
        out = words[0]
        for w in words[1:]:
            out += rng.choice([" ", " ", " ", "  ", "\n"]) + w
        return out + rng.choice(["", " ", ".", "!"])

    return edit


def chinese_edit(alphabet: Sequence[str]) -> Edit:
    """An edit for Chinese text: len/40 characters (at most 3) replaced, full- and half-width punctuation swapped."""

    def edit(text: str, rng: random.Random) -> str:
        chars = list(text)
        han = [i for i, c in enumerate(chars) if _HAN.match(c)]
        for i in rng.sample(han, min(3, len(han), len(chars) // CHARS_PER_REPLACEMENT)):
            chars[i] = rng.choice([c for c in rng.sample(alphabet, 5) if c != chars[i]] or ["的"])
        swap = FULL_TO_HALF if rng.random() < 0.5 else HALF_TO_FULL
        chars = [swap.get(c, c) if rng.random() < 0.7 else c for c in chars]
        if rng.random() < 0.5 and chars:
            chars.insert(rng.randrange(len(chars)), " ")
        return "".join(chars)

    return edit


def one_word_edit(vocabulary: Sequence[str]) -> Edit:
    """A question that differs by one word: one word replaced by another real word, nothing else touched."""

    def edit(text: str, rng: random.Random) -> str:
        words = text.split(" ")
        slots = [i for i, w in enumerate(words) if w.isalpha()]
        if not slots:
            return text + " " + rng.choice(vocabulary)
        i = rng.choice(slots)
        words[i] = rng.choice([w for w in rng.sample(vocabulary, 5) if w.lower() != words[i].lower()] or ["zebra"])
        return " ".join(words)

    return edit


def one_char_edit(alphabet: Sequence[str]) -> Edit:
    """A Chinese question that differs by one character (a tag value changed: 白色 -> 黑色)."""

    def edit(text: str, rng: random.Random) -> str:
        han = [i for i, c in enumerate(text) if _HAN.match(c)]
        if not han:
            return text + rng.choice(alphabet)
        i = rng.choice(han)
        return text[:i] + rng.choice([c for c in rng.sample(alphabet, 5) if c != text[i]] or ["的"]) + text[i + 1 :]

    return edit


def other_answers(records: Sequence[dict[str, Any]], donors: Sequence[dict[str, Any]], answer: str, seed: int) -> list[dict[str, Any]]:
    """Records that repeat a question of `records` with the answer of a donor (one record each, used once): not
    copies, whatever the question says (a second answer to the same question is more data, not a duplicate)."""
    rng = random.Random(seed)
    return [{**records[i], answer: d[answer]} for i, d in zip(rng.sample(range(len(records)), len(donors)), donors, strict=True)]


def with_near_copies(
    records: Sequence[dict[str, Any]],
    fields: Iterable[str],
    edit: Edit,
    seed: int,
    share: float = 0.3,
    most: int = 2,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The records plus 1..`most` edited copies of a `share` of them, shuffled; and each output record's group id
    (the index of the original it came from)."""
    rng = random.Random(seed)
    fields = list(fields)
    out = [(dict(r), i) for i, r in enumerate(records)]
    for i in rng.sample(range(len(records)), round(share * len(records))):
        for _ in range(rng.randint(1, most)):
            copy = dict(records[i])
            for f in fields:
                if isinstance(copy.get(f), str):
                    copy[f] = edit(copy[f], rng)
            out.append((copy, i))
    rng.shuffle(out)
    return [r for r, _ in out], [g for _, g in out]


def pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    """Every unordered pair of members within each group."""
    return {(a, b) for group in groups for a, b in combinations(sorted(group), 2)}


def scores(found: Iterable[Iterable[int]], truth: Iterable[Iterable[int]]) -> tuple[float, float]:
    """(precision, recall) of the duplicate pairs in `found` clusters against the `truth` groups."""
    got, want = pairs(found), pairs(truth)
    hit = len(got & want)
    return (hit / len(got) if got else 1.0), (hit / len(want) if want else 1.0)


def distinct(texts: Sequence[str], cutoff: float = 0.5, n: int = 5) -> list[int]:
    """Indices of texts to use as originals: each one's exact Jaccard of character n-grams (lowercased, letters and
    digits only) to every earlier one stays below `cutoff`, so the data's own near-copies cannot blur the truth.

    Computed exactly with a sparse product, independently of MinHash, so the test does not grade itself."""
    import numpy as np
    from scipy import sparse

    ids: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        clean = "".join(c for c in text.lower() if c.isalnum())
        grams = {clean[j : j + n] for j in range(max(1, len(clean) - n + 1))}
        for g in grams:
            rows.append(i)
            cols.append(ids.setdefault(g, len(ids)))
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(texts), len(ids)))
    inter = (m @ m.T).toarray()
    size = np.diag(inter)
    jaccard = inter / np.maximum(size[:, None] + size[None, :] - inter, 1)
    keep: list[int] = []
    for i in range(len(texts)):
        if not keep or jaccard[i, keep].max() < cutoff:
            keep.append(i)
    return keep


def sharing_a_template(templates: Sequence[str], fillers: Sequence[str], per_template: int, seed: int) -> list[tuple[str, str]]:
    """(template, filler) pairs: unrelated records that share their template text and differ in a short filler."""
    rng = random.Random(seed)
    distinct_fillers = list({"".join(c for c in f.lower() if c.isalnum()): f for f in fillers}.values())
    return [(t, f) for t in templates for f in rng.sample(distinct_fillers, per_template)]
