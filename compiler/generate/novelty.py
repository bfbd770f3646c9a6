"""Novelty: a candidate instruction too similar to a seed or to anything kept before it is dropped.

Two measures, one interface. `minhash` (the default) reuses the dedup pass's MinHash signatures and LSH band hashes as
an incremental index: a candidate is compared only with the texts that share a band with it, so each check costs
about the same however many instructions are kept; it drops a candidate whose exact Jaccard similarity (of its
shingle set) to one of them reaches the threshold. The banding is chosen for recall, not speed: a pair right at the
threshold shares a band with probability >= 1 - MISS (dedup's banding, which weighs false positives against false
negatives, lets about 1 in 8 through at 0.6). Bucket-mates whose signature estimate is clearly below the threshold are
passed over; every other one is confirmed on the exact Jaccard, so a drop is never the luck of an estimate.
`rouge-l` is Alpaca's rule, exactly: the ROUGE-L F-measure against every earlier instruction, dropped when one exceeds
the threshold (0.7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from dsc.compiler.dedup.lsh import MARGIN, band_keys, jaccard
from dsc.compiler.dedup.minhash import shingle_hashes, signatures, tokens
from dsc.compiler.dedup.settings import Near, Normalize
from dsc.compiler.generate.rouge import RougeIndex, tokenize

MINHASH = "minhash"
ROUGE_L = "rouge-l"
MISS = 0.002
"""Largest chance that a pair exactly at the threshold shares no band (the estimate's tail adds ~0.13%)."""


def recall_shape(threshold: float, num_perm: int, miss: float = MISS) -> tuple[int, int]:
    """(bands, rows) with the most rows per band (fewest chance bucket-mates) whose chance of missing a pair at the
    threshold, (1 - t^rows)^bands, is at most `miss`."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if (1 - threshold**rows) ** bands <= miss:
            return bands, rows
    return num_perm, 1


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
        self.bands, self.rows = (near.bands, near.rows) if near.bands and near.rows else recall_shape(near.threshold, near.num_perm)
        self.margin = MARGIN * np.sqrt(near.threshold * (1 - near.threshold) / near.num_perm)
        self.buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self.signatures = np.empty((64, near.num_perm), dtype=np.uint32)
        self.sets: list[np.ndarray] = []
        self.texts: list[str] = []

    def _hash(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Signatures (texts, num_perm), band keys (texts, bands) and shingle sets of a batch, from one hashing."""
        hashes, offsets = shingle_hashes([tokens(t, self.near.shingles, self.normalize) for t in texts], self.near.ngram)
        sigs = signatures(hashes, offsets, self.near.num_perm, self.near.seed)
        bands = sigs[:, : self.bands * self.rows].reshape(len(texts) * self.bands, self.rows)
        sets = [np.unique(hashes[offsets[i] : offsets[i + 1]]) for i in range(len(texts))]
        return sigs, band_keys(bands).reshape(len(texts), self.bands), sets

    def _store(self, text: str, signature: np.ndarray, keys: np.ndarray, shingles: np.ndarray) -> None:
        row = len(self.texts)
        if row == len(self.signatures):
            self.signatures = np.concatenate((self.signatures, np.empty_like(self.signatures)))
        self.signatures[row] = signature
        self.sets.append(shingles)
        self.texts.append(text)
        for band, key in zip(self.buckets, keys.tolist(), strict=True):
            band.setdefault(key, []).append(row)

    def add(self, texts: Sequence[str]) -> None:
        if not texts:
            return
        for text, signature, key, shingles in zip(texts, *self._hash(texts), strict=True):
            self._store(text, signature, key, shingles)

    def select(self, texts: Sequence[str], room: int) -> list[Verdict | None]:
        if not texts:
            return []
        sigs, keys, sets = self._hash(texts)

        def judge(i: int) -> Verdict:
            found: set[int] = set()
            for band, key in zip(self.buckets, keys[i].tolist(), strict=True):
                found.update(band.get(key, ()))
            rows = np.fromiter(sorted(found), dtype=np.int64, count=len(found))
            estimate = (self.signatures[rows] == sigs[i]).mean(axis=1) if len(rows) else np.empty(0)
            close = rows[estimate > self.near.threshold - self.margin]
            score = np.array([jaccard(sets[i], self.sets[r]) for r in close.tolist()])
            order = np.argsort(-score, kind="stable")[: self.top]
            verdict = Verdict(
                novel=not bool((score >= self.near.threshold).any()),
                similar=[(self.texts[close[j]], float(score[j])) for j in order],
            )
            if verdict.novel:
                self._store(texts[i], sigs[i], keys[i], sets[i])
            return verdict

        return _judge_in_order(judge, texts, room)
