"""Exact ROUGE-L F-measure of one text against a growing set, as Alpaca scores novelty, vectorized.

Tokens are `rouge_score`'s (no stemmer): lowercase, runs of [a-z0-9]. The score of a pair is rouge_score's
`_score_lcs`: precision = LCS / len(earlier), recall = LCS / len(new), F = 2PR / (P + R), and 0 when either text has
no tokens (so text without ASCII letters or digits, Chinese for one, always scores 0: Alpaca's rule cannot see it).

The LCS is the bit-parallel one (Allison & Dix 1986, Hyyro 2004): each stored text is a row of 64-bit words with one
bit per token position; for each token y of the new text, with M the positions where the row holds y,
V <- (V + (V & M)) | (V & ~M), starting from all ones, and the LCS is the number of zero bits left. One pass over the
new text's tokens updates every row at once in numpy, instead of one Python dynamic-programming table per pair.
"""

from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
WORD = 64


def tokenize(text: str) -> list[str]:
    """rouge_score's tokenizer without stemming."""
    return _TOKEN.findall(text.lower())


def fmeasure(lcs: np.ndarray, earlier: np.ndarray, new: int) -> np.ndarray:
    """rouge_score's F from LCS lengths, in its order of float operations (so ties at a threshold agree)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / earlier
        recall = lcs / new if new else np.zeros(len(lcs))
        f = 2 * precision * recall / (precision + recall)
    return np.where((lcs > 0) & (earlier > 0), f, 0.0)


class RougeIndex:
    """Token rows of every text added so far, with per-token position masks, for LCS against all of them at once."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.lengths = np.zeros(64, dtype=np.int64)
        self.size = 0
        self.words = 1
        # Postings per token id: the rows holding it and its position masks there, in arrays that double when full.
        self._rows: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._count: list[int] = []

    def __len__(self) -> int:
        return self.size

    def _ids(self, tokens: list[str], grow: bool) -> list[int]:
        if not grow:
            return [self.vocab.get(t, -1) for t in tokens]
        for t in tokens:
            if t not in self.vocab:
                self.vocab[t] = len(self.vocab)
                self._rows.append(np.zeros(4, dtype=np.int64))
                self._masks.append(np.zeros((4, self.words), dtype=np.uint64))
                self._count.append(0)
        return [self.vocab[t] for t in tokens]

    def add(self, tokens: list[str]) -> None:
        """Store one text's tokens as the next row."""
        row = self.size
        if row == len(self.lengths):
            self.lengths = np.concatenate((self.lengths, np.zeros(len(self.lengths), dtype=np.int64)))
        self.lengths[row] = len(tokens)
        self.size += 1
        self.words = max(self.words, -(-len(tokens) // WORD))
        masks: dict[int, np.ndarray] = {}
        for position, token in enumerate(self._ids(tokens, grow=True)):
            mask = masks.setdefault(token, np.zeros(self.words, dtype=np.uint64))
            mask[position // WORD] |= np.uint64(1) << np.uint64(position % WORD)
        for token, mask in masks.items():
            rows, stored = self._postings(token)
            k = self._count[token]
            if k == len(rows):
                self._rows[token] = rows = np.concatenate((rows, np.zeros(k, dtype=np.int64)))
                self._masks[token] = stored = np.concatenate((stored, np.zeros((k, self.words), dtype=np.uint64)))
            rows[k] = row
            stored[k] = mask
            self._count[token] = k + 1

    def _postings(self, token: int) -> tuple[np.ndarray, np.ndarray]:
        """The (rows, masks) arrays of one token, masks widened first if a longer text has raised the word count."""
        masks = self._masks[token]
        if masks.shape[1] < self.words:
            wider = np.zeros((len(masks), self.words), dtype=np.uint64)
            wider[:, : masks.shape[1]] = masks
            self._masks[token] = masks = wider
        return self._rows[token], masks

    def lcs(self, tokens: list[str]) -> np.ndarray:
        """LCS length of `tokens` with every stored row."""
        n, words = self.size, self.words
        ids = self._ids(tokens, grow=False)
        known = {t for t in ids if t >= 0}
        match = {}
        for token in known:
            rows, masks = self._postings(token)
            k = self._count[token]
            full = np.zeros((n, words), dtype=np.uint64)
            full[rows[:k]] = masks[:k]
            match[token] = full
        v = np.full((n, words), np.iinfo(np.uint64).max, dtype=np.uint64)
        for token in ids:
            if token < 0:
                continue  # a token no stored text has: V stays as it is
            m = match[token]
            u = v & m
            keep = v & ~m
            carry = np.zeros(n, dtype=np.uint64)
            for w in range(words):  # V + U with the carry running from the low word up
                t = v[:, w] + u[:, w]
                s = t + carry
                carry = ((t < v[:, w]) | (s < t)).astype(np.uint64)
                v[:, w] = s | keep[:, w]
        ones = np.zeros(n, dtype=np.int64)
        for w in range(words):
            valid = np.clip(self.lengths[:n] - w * WORD, 0, WORD)
            field = np.where(valid == WORD, np.iinfo(np.uint64).max, (np.uint64(1) << valid.astype(np.uint64)) - np.uint64(1))
            ones += np.bitwise_count(v[:, w] & field).astype(np.int64)
        return self.lengths[:n] - ones

    def scores(self, tokens: list[str]) -> np.ndarray:
        """ROUGE-L F of `tokens` against every stored row."""
        return fmeasure(self.lcs(tokens), self.lengths[: self.size], len(tokens))
