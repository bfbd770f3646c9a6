"""Benchmark: `dsc generate`'s novelty filter, MinHash LSH against exact ROUGE-L, on the same 5,000 candidates.

Candidates are real instructions with light edits, the kind a model writes when it riffs on its examples: the 999
alpaca_en_demo instructions and the 175 Alpaca seed instructions, then edited copies of random ones (a word replaced,
dropped or swapped with its neighbour, a polite opening or a closing clause added, or the head of one spliced to the
tail of another) until there are 5,000, shuffled. Each filter starts from the 175 seeds, as a run does, and judges the
candidates in order, remembering each one it keeps.

Prints, per filter: seconds, candidates per second, how many it keeps; how often the two agree; for MinHash, how many
pairs right at its threshold it misses (tests/threshold_pairs.py: copies of real instructions whose word sets have
exactly the threshold's Jaccard with the original), with its recall banding and with dedup's banding; and the time
the textbook per-pair dynamic programme (what Alpaca's rouge_score runs, in a process pool) takes on a prefix of the
candidates, checked to make the same decisions as dsc's vectorized ROUGE-L.

    python bench/novelty_bench.py [--candidates 5000] [--thresholds 0.5,0.6,0.7] [--reference 300]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dsc.compiler.dedup.lsh import band_shape  # noqa: E402
from dsc.compiler.dedup.settings import Near  # noqa: E402
from dsc.compiler.generate.novelty import MinHashNovelty, RougeNovelty  # noqa: E402
from dsc.compiler.generate.rouge import tokenize  # noqa: E402
from dsc.compiler.generate.spec import DEFAULT_MINHASH_NGRAM, DEFAULT_MINHASH_THRESHOLD, read_seeds  # noqa: E402
from threshold_pairs import threshold_pairs  # noqa: E402

DATA = REPO / "formats" / "data"
OPENINGS = ["Please", "Can you", "Now,", "Quickly", "In a few words,"]
CLOSINGS = ["in one sentence.", "for a child.", "using simple words.", "and explain why.", "with an example."]


def _edit(text: str, others: list[str], vocabulary: list[str], rng: random.Random) -> str:
    words = text.split()
    kind = rng.randrange(6)
    if kind == 0 and words:
        words[rng.randrange(len(words))] = rng.choice(vocabulary)
    elif kind == 1 and len(words) > 4:
        del words[rng.randrange(len(words))]
    elif kind == 2 and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 3:
        words = [rng.choice(OPENINGS), words[0].lower() if words else "", *words[1:]]
    elif kind == 4:
        words = [*words, rng.choice(CLOSINGS)]
    else:
        other = rng.choice(others).split()
        words = words[: len(words) // 2] + other[len(other) // 2 :]
    return " ".join(w for w in words if w)


def candidates(n: int, seed: int, seeds: list[str]) -> list[str]:
    """`n` candidate instructions: the real ones, then edited copies of random real ones, shuffled."""
    rng = random.Random(seed)
    demo = [r["instruction"] for r in json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))]
    real = demo + seeds
    vocabulary = sorted({w for t in real for w in t.split() if w.isalpha()})
    out = list(real)
    while len(out) < n:
        text = rng.choice(real)
        for _ in range(rng.randint(1, 2)):
            text = _edit(text, real, vocabulary, rng)
        out.append(text)
    rng.shuffle(out)
    return out[:n]


def lcs_dp(a: list[str], b: list[str]) -> int:
    """The textbook LCS table, as rouge_score's `_lcs_table` fills it."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def reference_keeps(seeds: list[str], texts: list[str], threshold: float) -> tuple[list[bool], float]:
    """Alpaca's loop with per-pair Python LCS (one process): which candidates it keeps, and the seconds it took."""
    start = time.perf_counter()
    kept_tokens = [tokenize(t) for t in seeds]
    keeps = []
    for text in texts:
        new = tokenize(text)
        best = 0.0
        for old in kept_tokens:
            if not new or not old:
                continue
            lcs = lcs_dp(new, old)
            p, r = lcs / len(old), lcs / len(new)
            best = max(best, 2 * p * r / (p + r) if p + r > 0 else 0.0)
        keeps.append(best <= threshold)
        if best <= threshold:
            kept_tokens.append(new)
    return keeps, time.perf_counter() - start


def run(index: MinHashNovelty | RougeNovelty, seeds: list[str], texts: list[str], chunk: int) -> tuple[list[bool], float]:
    """Judge the candidates `chunk` at a time (what one response holds), as a run does."""
    start = time.perf_counter()
    index.add(seeds)
    verdicts = [v for i in range(0, len(texts), chunk) for v in index.select(texts[i : i + chunk], room=chunk)]
    return [v is not None and v.novel for v in verdicts], time.perf_counter() - start


def misses(near: Near, pairs: list[tuple[str, str]]) -> int:
    """Copies an index holding the originals keeps (does not find too similar to their original)."""
    index = MinHashNovelty(near, top=len(pairs))
    index.add(list(dict.fromkeys(a for a, _ in pairs)))
    verdicts = index.select([b for _, b in pairs], room=len(pairs))
    return sum(v is None or v.novel or a not in dict(v.similar) for (a, _), v in zip(pairs, verdicts, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--thresholds", default=f"0.4,0.5,{DEFAULT_MINHASH_THRESHOLD},0.7", help="MinHash Jaccard thresholds")
    parser.add_argument("--reference", type=int, default=300, help="candidates for the per-pair Python DP reference")
    parser.add_argument("--chunk", type=int, default=15, help="candidates per response (a list of 20 less 3 examples, less drops)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seeds = [t.instruction for t in read_seeds(DATA / "alpaca_seed_tasks.jsonl")]
    demo = [r["instruction"] for r in json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))]
    texts = candidates(args.candidates, args.seed, seeds)
    print(f"{len(texts)} candidates ({len(set(texts))} distinct texts), {len(seeds)} seeds to start from")

    rouge_keeps, rouge_s = run(RougeNovelty(threshold=0.7), seeds, texts, args.chunk)
    print(f"rouge-l  > 0.70 drops   {rouge_s:7.2f} s  {len(texts) / rouge_s:9.0f} candidates/s  kept {sum(rouge_keeps)}")
    for threshold in sorted({float(t) for t in args.thresholds.split(",")}):
        keeps, seconds = run(MinHashNovelty(Near(threshold=threshold, ngram=DEFAULT_MINHASH_NGRAM)), seeds, texts, args.chunk)
        agree = sum(a == b for a, b in zip(keeps, rouge_keeps, strict=True))
        label = " (default)" if threshold == DEFAULT_MINHASH_THRESHOLD else ""
        pairs = threshold_pairs(demo, threshold)
        missed = misses(Near(threshold=threshold, ngram=DEFAULT_MINHASH_NGRAM), pairs)
        bands, rows = band_shape(threshold, 128)
        dedup_missed = misses(Near(threshold=threshold, ngram=DEFAULT_MINHASH_NGRAM, bands=bands, rows=rows), pairs)
        print(
            f"minhash >= {threshold:.2f} drops  {seconds:7.2f} s  {len(texts) / seconds:9.0f} candidates/s  kept {sum(keeps)}  "
            f"same decision as rouge-l on {agree / len(texts):.1%}  speed-up {rouge_s / seconds:.1f}x{label}\n"
            f"    pairs at exactly {threshold:.2f} missed: {missed} of {len(pairs)} ({missed / len(pairs):.2%}); "
            f"with dedup's banding ({bands}x{rows}): {dedup_missed} ({dedup_missed / len(pairs):.2%})"
        )
    prefix = texts[: args.reference]
    keeps, seconds = reference_keeps(seeds, prefix, 0.7)
    assert keeps == rouge_keeps[: len(prefix)], "vectorized ROUGE-L disagrees with the per-pair DP"
    print(
        f"per-pair Python DP (Alpaca's rouge_score loop, one process) on the first {len(prefix)}: {seconds:.2f} s, "
        f"{len(prefix) / seconds:.0f} candidates/s, same {sum(keeps)} kept as dsc's rouge-l"
    )


if __name__ == "__main__":
    main()
