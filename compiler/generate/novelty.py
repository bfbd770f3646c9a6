"""Novelty: a candidate instruction too similar to a seed or to anything kept before it is dropped.

Two measures, one interface. `minhash` (the default) reuses the dedup pass's MinHash signatures and LSH banding as an
incremental index: a candidate is compared only with the texts that share a band with it, so each check costs about
the same however many instructions are kept; it drops a candidate whose Jaccard similarity (of word-bigram shingles,
estimated, exact near the threshold) to one of them reaches the threshold. `rouge-l` is Alpaca's rule, exactly: the
ROUGE-L F-measure against every earlier instruction, dropped when one exceeds the threshold (0.7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from dsc.compiler.dedup_spec import Near, Normalize
from dsc.compiler.generate.rouge import RougeIndex, tokenize
from dsc.compiler.lsh import MARGIN, band_keys, band_shape
from dsc.compiler.minhash import batch_signatures, shingle_sets

MINHASH = "minhash"
ROUGE_L = "rouge-l"


@dataclass
class Verdict:
    """Whether a candidate is new enough, its most similar earlier texts (best first) and, where every earlier text
    was scored, the average score (Alpaca's `avg_similarity_score`)."""

    novel: bool
    similar: list[tuple[str, float]]
    average: float | None = None


class Novelty(Protocol):
    """An index of the texts seen so far."""

    def add(self, texts: Sequence[str]) -> None:
        """Remember texts without judging them (the seeds, and the records of a run being resumed)."""

    def select(self, texts: Sequence[str], room: int) -> list[Verdict | None]:
        """Judge `texts` in order, remembering each novel one before judging the next; stop once `room` are kept
        (the texts after that get None: not judged, not remembered)."""


def _judge_in_order(judge: Callable[[int], Verdict], texts: Sequence[str], room: int) -> list[Verdict | None]:
    out: list[Verdict | None] = [None] * len(texts)
    for i in range(len(texts)):
        if room <= 0:
            break
        out[i] = verdict = judge(i)
        if verdict.novel:
            room -= 1
    return out


class RougeNovelty:
    """Alpaca's rule: drop when ROUGE-L F to any earlier text is above the threshold; keep the top `top` scores."""

    def __init__(self, threshold: float = 0.7, top: int = 10) -> None:
        self.threshold = threshold
        self.top = top
        self.index = RougeIndex()
        self.texts: list[str] = []

    def add(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.index.add(tokenize(text))
            self.texts.append(text)

    def select(self, texts: Sequence[str], room: int) -> list[Verdict | None]:
        def judge(i: int) -> Verdict:
            tokens = tokenize(texts[i])
            scores = self.index.scores(tokens)
            if not len(scores):
                verdict = Verdict(novel=True, similar=[], average=None)
            else:
                best = np.argsort(scores)[-self.top :][::-1]  # Alpaca's ordering, ties included
                similar = [(self.texts[j], float(scores[j])) for j in best]
                verdict = Verdict(novel=bool(scores.max() <= self.threshold), similar=similar, average=float(np.mean(scores)))
            if verdict.novel:
                self.index.add(tokens)
                self.texts.append(texts[i])
            return verdict

        return _judge_in_order(judge, texts, room)


class MinHashNovelty:
    """MinHash LSH over word shingles, as the dedup pass computes them, grown one kept text at a time."""

    def __init__(self, near: Near, top: int = 10) -> None:
        self.near = near
        self.normalize = Normalize()
        self.top = top
        self.bands, self.rows = (near.bands, near.rows) if near.bands and near.rows else band_shape(near.threshold, near.num_perm)
        self.margin = MARGIN * np.sqrt(near.threshold * (1 - near.threshold) / near.num_perm)
        self.buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self.signatures = np.empty((64, near.num_perm), dtype=np.uint32)
        self.texts: list[str] = []

    def _hash(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures (texts, num_perm) and band keys (texts, bands) of a batch."""
        signatures = batch_signatures(texts, self.near, self.normalize)
        bands = signatures[:, : self.bands * self.rows].reshape(len(texts) * self.bands, self.rows)
        return signatures, band_keys(bands).reshape(len(texts), self.bands)

    def _store(self, text: str, signature: np.ndarray, keys: np.ndarray) -> None:
        row = len(self.texts)
        if row == len(self.signatures):
            self.signatures = np.concatenate((self.signatures, np.empty_like(self.signatures)))
        self.signatures[row] = signature
        self.texts.append(text)
        for band, key in zip(self.buckets, keys.tolist(), strict=True):
            band.setdefault(key, []).append(row)

    def add(self, texts: Sequence[str]) -> None:
        if not texts:
            return
        signatures, keys = self._hash(texts)
        for text, signature, key in zip(texts, signatures, keys, strict=True):
            self._store(text, signature, key)

    def _exact(self, text: str, rows: np.ndarray) -> np.ndarray:
        """Exact Jaccard of the shingle sets of `text` and each stored row (for estimates too close to call)."""
        sets = shingle_sets([text, *(self.texts[r] for r in rows.tolist())], self.near, self.normalize)
        mine = sets[0]
        out = np.empty(len(rows))
        for i, other in enumerate(sets[1:]):
            both = np.intersect1d(mine, other, assume_unique=True).size
            out[i] = both / max(1, mine.size + other.size - both)
        return out

    def select(self, texts: Sequence[str], room: int) -> list[Verdict | None]:
        if not texts:
            return []
        signatures, keys = self._hash(texts)

        def judge(i: int) -> Verdict:
            found: set[int] = set()
            for band, key in zip(self.buckets, keys[i].tolist(), strict=True):
                found.update(band.get(key, ()))
            rows = np.fromiter(sorted(found), dtype=np.int64, count=len(found))
            score = (self.signatures[rows] == signatures[i]).mean(axis=1) if len(rows) else np.empty(0)
            unsure = np.abs(score - self.near.threshold) < self.margin
            if unsure.any():
                score[unsure] = self._exact(texts[i], rows[unsure])
            order = np.argsort(-score, kind="stable")[: self.top]
            verdict = Verdict(
                novel=not bool((score >= self.near.threshold).any()),
                similar=[(self.texts[rows[j]], float(score[j])) for j in order],
            )
            if verdict.novel:
                self._store(texts[i], signatures[i], keys[i])
            return verdict

        return _judge_in_order(judge, texts, room)
