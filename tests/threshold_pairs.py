"""Pairs of instructions whose shingle sets have a Jaccard similarity of exactly a given threshold, from real text.

Shared by the novelty test and bench/novelty_bench.py, so both measure recall on the same kind of pair. A copy keeps
n - k of the original's n distinct words and puts k words the original lacks in place of the others (every
occurrence), so its word set's Jaccard with the original's is (n - k) / (n + k): 6/10 = 0.6 for n = 8, k = 2.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction

from dsc.compiler.dedup.minhash import tokens
from dsc.compiler.dedup.settings import Normalize


def _sizes(threshold: float, most: int) -> list[tuple[int, int]]:
    """(n, k) with (n - k) / (n + k) == threshold exactly, n from 8 (an instruction's length) to `most`."""
    t = Fraction(threshold).limit_denominator(1000)
    return [(n, int(n * (1 - t) / (1 + t))) for n in range(8, most + 1) if (n * (1 - t) / (1 + t)).denominator == 1 and n * (1 - t) > 0]


def threshold_pairs(texts: Sequence[str], threshold: float, copies: int = 3, seed: int = 0) -> list[tuple[str, str]]:
    """(original, copy) pairs: each text with enough distinct words, its words cut to its first n distinct ones (the
    largest n that qualifies), with `copies` copies (different words replaced each time); words are the tokens
    MinHash shingles (ngram 1)."""
    rng = random.Random(seed)
    streams = [tokens(t, "auto", Normalize()) for t in texts]
    vocabulary = sorted({w for s in streams for w in s})
    out = []
    for stream in streams:
        distinct = list(dict.fromkeys(stream))
        sizes = _sizes(threshold, len(distinct))
        if not sizes:
            continue
        n, k = sizes[-1]
        keep = set(distinct[:n])
        words = [w for w in stream if w in keep]
        original = " ".join(words)
        for _ in range(copies):
            replaced = rng.sample(distinct[:n], k)
            fresh = iter(rng.sample([w for w in vocabulary if w not in keep], k))
            swap = {w: next(fresh) for w in replaced}
            out.append((original, " ".join(swap.get(w, w) for w in words)))
    return out
