"""Novelty: the vectorized ROUGE-L against the textbook per-pair LCS and rouge_score's scoring rules, Alpaca's
sequential keep-or-drop loop reproduced, and the MinHash LSH index on real instructions and their rewordings, and its
recall on pairs exactly at the threshold."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from conftest import DATA
from dsc.compiler.dedup.settings import Near
from dsc.compiler.generate.novelty import MISS, MinHashNovelty, RougeNovelty, recall_shape
from dsc.compiler.generate.rouge import RougeIndex, tokenize
from dsc.compiler.generate.spec import DEFAULT_MINHASH_NGRAM, DEFAULT_MINHASH_THRESHOLD, read_seeds
from threshold_pairs import threshold_pairs

SEEDS = [t.instruction for t in read_seeds(DATA / "alpaca_seed_tasks.jsonl")]
DEMO = [r["instruction"] for r in json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))]


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's tokenizer as documented: lowercase, non-[a-z0-9] runs to spaces, split, keep valid tokens."""
    return [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", text.lower())) if re.match(r"^[a-z0-9]+$", t)]


def lcs_table(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def score_lcs(target: list[str], prediction: list[str]) -> float:
    """rouge_score's _score_lcs F-measure, written from its description."""
    if not target or not prediction:
        return 0
    lcs = lcs_table(target, prediction)
    precision, recall = lcs / len(prediction), lcs / len(target)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def test_tokenizer_is_rouge_scores():
    for text in [*SEEDS[:50], "Don't stop: CAFÉ-au-lait, 3.14 & x_y!", "请写一首诗", ""]:
        assert tokenize(text) == rouge_tokens(text)


def test_bit_parallel_lcs_equals_the_table_for_short_and_multiword_rows():
    rng = random.Random(3)
    index, rows = RougeIndex(), []
    for n in range(160):
        row = [rng.choice("abcdefg") for _ in range(rng.choice([0, 1, 5, 63, 64, 65, 128, 129, 200]))]
        rows.append(row)
        index.add(row)
        if n % 16 == 0:
            query = [rng.choice("abcdefgz") for _ in range(rng.choice([0, 3, 40, 90]))]
            assert index.lcs(query).tolist() == [lcs_table(query, r) for r in rows]


def test_rouge_scores_equal_rouge_score_floats_on_real_instructions():
    index = RougeIndex()
    for text in SEEDS:
        index.add(tokenize(text))
    for text in DEMO[:40]:
        new = tokenize(text)
        expected = [score_lcs(new, tokenize(s)) for s in SEEDS]
        assert index.scores(new).tolist() == expected  # exact floats, so ties at 0.7 decide alike


def alpaca_loop(seeds: list[str], candidates: list[str]) -> list[tuple[bool, dict[str, float], float]]:
    """Alpaca's novelty loop as described: score against all seeds and kept, top 10 by argsort, drop above 0.7."""
    all_instructions = list(seeds)
    tokens = [rouge_tokens(t) for t in all_instructions]
    out = []
    for text in candidates:
        new = rouge_tokens(text)
        scores = [score_lcs(new, t) for t in tokens]
        top = {all_instructions[i]: scores[i] for i in np.argsort(scores)[-10:][::-1]}
        keep = max(scores) <= 0.7
        out.append((keep, top, float(np.mean(scores))))
        if keep:
            all_instructions.append(text)
            tokens.append(new)
    return out


def test_rouge_novelty_reproduces_alpacas_loop():
    rng = random.Random(5)
    candidates = []
    for text in DEMO[:60]:
        candidates.append(text)
        words = text.split()
        words[rng.randrange(len(words))] = "quickly"
        candidates.append(" ".join(words))  # a one-word rewording: usually above 0.7, so dropped
    novelty = RougeNovelty(0.7)
    novelty.add(SEEDS)
    verdicts = [v for i in range(0, len(candidates), 7) for v in novelty.select(candidates[i : i + 7], room=100)]
    expected = alpaca_loop(SEEDS, candidates)
    assert [v.novel for v in verdicts] == [e[0] for e in expected]
    for verdict, (_, top, average) in zip(verdicts, expected, strict=True):
        assert dict(verdict.similar) == top and list(dict(verdict.similar)) == list(top)
        assert verdict.average == pytest.approx(average, rel=1e-12)
    assert 20 < sum(v.novel for v in verdicts) < len(candidates)


def test_select_stops_once_the_room_is_used():
    for novelty in (RougeNovelty(), MinHashNovelty(Near(threshold=0.6, ngram=1))):
        novelty.add(SEEDS[:10])
        verdicts = novelty.select(DEMO[:6], room=2)
        assert [v is not None for v in verdicts] == [True, True, False, False, False, False]
        assert sum(v.novel for v in verdicts if v) == 2
        # what was not judged was not remembered: the same texts are novel on the next call
        assert all(v.novel for v in novelty.select(DEMO[2:4], room=2))


def test_minhash_drops_copies_and_rewordings_of_seeds_and_of_what_it_kept():
    novelty = MinHashNovelty(Near(threshold=DEFAULT_MINHASH_THRESHOLD, ngram=DEFAULT_MINHASH_NGRAM))
    novelty.add(SEEDS)
    seed = SEEDS[1]  # "What is the relation between the given pairs?"
    batch = [
        seed.upper(),  # case: the same words
        "What is the relation between the given two pairs?",  # one word added to a seed
        DEMO[0],
        DEMO[0].rstrip(".") + " now.",  # a reworded copy of the candidate kept just before, in the same response
        DEMO[1],
    ]
    verdicts = novelty.select(batch, room=10)
    assert [v.novel for v in verdicts] == [False, False, True, False, True]
    assert verdicts[0].similar[0] == (seed, 1.0)
    assert verdicts[3].similar[0][0] == DEMO[0] and verdicts[3].similar[0][1] >= DEFAULT_MINHASH_THRESHOLD
    assert novelty.texts[-2:] == [DEMO[0], DEMO[1]]


def test_minhash_keeps_real_distinct_instructions():
    novelty = MinHashNovelty(Near(threshold=DEFAULT_MINHASH_THRESHOLD, ngram=DEFAULT_MINHASH_NGRAM))
    novelty.add(SEEDS)
    verdicts = novelty.select(DEMO[:200], room=200)
    kept = sum(v.novel for v in verdicts)
    # the demo set is mostly distinct tasks; ROUGE-L > 0.7 keeps about as many
    rouge = RougeNovelty()
    rouge.add(SEEDS)
    rouge_kept = sum(v.novel for v in rouge.select(DEMO[:200], room=200))
    assert kept >= 180 and abs(kept - rouge_kept) <= 10


def at_threshold_misses(near: Near, pairs: list[tuple[str, str]]) -> tuple[int, list[float]]:
    """How many copies the index does not drop for their original, and the scores it gave the originals it found."""
    novelty = MinHashNovelty(near, top=10_000)
    novelty.add(list(dict.fromkeys(a for a, _ in pairs)))
    missed, scores = 0, []
    for (original, _), verdict in zip(pairs, novelty.select([b for _, b in pairs], room=len(pairs)), strict=True):
        found = dict(verdict.similar).get(original)
        if found is None or verdict.novel:
            missed += 1
        else:
            scores.append(found)
    return missed, scores


def test_minhash_misses_under_1_percent_of_pairs_right_at_the_threshold():
    pairs = threshold_pairs(DEMO, DEFAULT_MINHASH_THRESHOLD)
    assert len(pairs) > 2000
    missed, scores = at_threshold_misses(Near(threshold=DEFAULT_MINHASH_THRESHOLD, ngram=DEFAULT_MINHASH_NGRAM), pairs)
    assert missed < 0.01 * len(pairs)
    assert set(scores) == {DEFAULT_MINHASH_THRESHOLD}  # confirmed on the exact Jaccard, never an estimate
    # dedup's banding for the same threshold (25 bands of 5 rows) would let about 1 in 8 through
    dedup_missed, _ = at_threshold_misses(Near(threshold=DEFAULT_MINHASH_THRESHOLD, ngram=DEFAULT_MINHASH_NGRAM, bands=25, rows=5), pairs)
    assert dedup_missed > 0.08 * len(pairs)


def test_recall_banding_meets_its_bound():
    for threshold in (0.5, 0.6, 0.7, 0.8):
        bands, rows = recall_shape(threshold, 128)
        assert (1 - threshold**rows) ** bands <= MISS < (1 - threshold ** (rows + 1)) ** (128 // (rows + 1))
