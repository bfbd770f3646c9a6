"""Benchmark: dsc's dedup pass on 100,000 records with injected near-copies, beside a naive datasketch loop.

Records are real text: half English (the instruction and input of two different alpaca_en_demo records, joined), half
Chinese (one ADGEN record's tag list with another's ad copy), so they are distinct while the text stays real; then 10%
of them get one or two near-copies from tests/near_copies.py, the edits the quality test uses. Both sides use the
same tokens, n-gram size, num_perm, seed and LSH bands (the spec defaults):

- dsc:   phase one (signatures, a batch pass chained after render: timed as render with signatures minus render
         without), phase two (the `deduplicate` call: LSH bands, union-find, keep, audit), and both together.
- naive: one `MinHash` per record and `MinHash.update` per shingle, then `MinHashLSH` (insertion session), a query
         per record, `MinHash.jaccard` on each candidate and a Python union-find.

Prints records/s for each stage, the end-to-end ratio, pair precision/recall of both against the injected copies,
the bytes of dedup state per record (in memory and on disk) and the peak RSS.

    python bench/dedup_bench.py [--records 100000] [--naive-records N] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import datasets  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402
from dsc.compiler.dedup.lsh import band_shape  # noqa: E402
from dsc.compiler.dedup.minhash import tokens  # noqa: E402
from dsc.compiler.dedup.passes import deduplicate  # noqa: E402
from dsc.compiler.dedup.settings import Normalize  # noqa: E402
from dsc.compiler.pipeline import Options, render  # noqa: E402
from dsc.compiler.spec import load_spec  # noqa: E402
from near_copies import chinese_edit, distinct, english_edit, scores, with_near_copies  # noqa: E402

DATA = REPO / "formats" / "data"
NORMALIZE = Normalize()


def real_records(n: int, seed: int) -> tuple[list[str], list[int]]:
    """n texts (half English, half Chinese) with 10% injected near-copies; and each text's original's index.

    An original joins two different real records of about the same length (neighbours in length order, each pair
    once), taken from the records that are not near copies of each other already, so two originals share at most
    one half of comparable weight (Jaccard about 1/3)."""
    rng = random.Random(seed)
    alpaca = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    adgen = [json.loads(x) for x in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()]
    halves = [
        [alpaca[i]["instruction"] + " " + alpaca[i]["input"] for i in distinct([r["instruction"] + r["input"] for r in alpaca])],
        [adgen[i]["summary"] for i in distinct([r["summary"] for r in adgen])],
    ]
    halves = [sorted(h, key=len) for h in halves]
    originals = round(n / 1.14)
    pairs: set[tuple[int, int, int]] = set()
    while len(pairs) < originals:
        lang = len(pairs) % 2
        a = rng.randrange(len(halves[lang]) - 60)
        pairs.add((lang, a, a + rng.randint(1, 60)))
    texts = [{"text": f"{halves[lang][a]}\n{halves[lang][b]}"} for lang, a, b in sorted(pairs)]
    vocabulary = sorted({w for r in alpaca for w in r["output"].split() if w.isalpha()})
    alphabet = sorted({c for r in adgen for c in r["summary"] if "\u4e00" <= c <= "\u9fff"})
    english, chinese = english_edit(vocabulary), chinese_edit(alphabet)

    def edit(text: str, r: random.Random) -> str:
        return chinese(text, r) if max(text) >= "\u4e00" else english(text, r)

    records, groups = with_near_copies(texts, ["text"], edit, seed=seed, share=0.1)
    return [r["text"] for r in records][:n], groups[:n]


def naive(texts: list[str], ngram: int, num_perm: int, seed: int, threshold: float) -> tuple[float, float, list[set[int]]]:
    """The loop a user writes with datasketch alone: seconds for signatures, seconds for LSH + clusters, clusters."""
    start = time.perf_counter()
    sketches = []
    for text in texts:
        m = MinHash(num_perm=num_perm, seed=seed)
        toks = tokens(text, "auto", NORMALIZE)
        for j in range(max(1, len(toks) - ngram + 1)):
            m.update(" ".join(toks[j : j + ngram]).encode("utf-8"))
        sketches.append(m)
    signed = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=band_shape(threshold, num_perm))
    with lsh.insertion_session() as session:
        for i, m in enumerate(sketches):
            session.insert(i, m, check_duplication=False)
    parent = list(range(len(texts)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i and m.jaccard(sketches[j]) >= threshold:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    clusters: dict[int, set[int]] = {}
    for i in range(len(texts)):
        clusters.setdefault(root(i), set()).add(i)
    return signed - start, time.perf_counter() - signed, [c for c in clusters.values() if len(c) > 1]


def truth(groups: list[int]) -> list[set[int]]:
    out: dict[int, set[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, set()).add(i)
    return [g for g in out.values() if len(g) > 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--naive-records", type=int, default=None, help="run the naive loop on the first N only")
    parser.add_argument("--num-proc", type=int, default=None)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    texts, groups = real_records(args.records, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "records.jsonl"
        data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        spec_file = Path(tmp) / "spec.yaml"
        spec_file.write_text(
            f"name: bench\nsources: [{{path: {data}}}]\nfields: {{text: {{type: string, required: true}}}}\n"
            'templates: {prompt: "{{ text }}", response: "."}\ndedup: {compare: text}\n',
            encoding="utf-8",
        )
        spec = load_spec(spec_file)
        near = spec.dedup.near
        options = Options(num_proc=args.num_proc)
        start = time.perf_counter()
        render(spec, options)
        t_render = time.perf_counter() - start
        start = time.perf_counter()
        rendered = render(spec, options, signatures=True)
        t_sig = time.perf_counter() - start - t_render
        start = time.perf_counter()
        whole = deduplicate(spec, rendered)
        t_lsh = time.perf_counter() - start
        t_whole = t_sig + t_lsh
        table = rendered.signatures
    n = len(texts)
    ours: dict[int, set[int]] = {}
    for d, k in zip(whole.dropped.tolist(), whole.kept.tolist(), strict=True):
        ours.setdefault(k, {k}).add(d)
    p, r = scores(ours.values(), truth(groups))
    assert rendered.signature_rows is not None and rendered.compared is not None
    on_disk = rendered.signature_rows.path.stat().st_size + rendered.compared.path.stat().st_size
    state = table.nbytes + rendered.keys.nbytes + 8 * n + 8 * n  # + union-find parents, compared-text offsets
    bands, rows = band_shape(near.threshold, near.num_perm)
    print(
        f"records: {n} ({len(truth(groups))} injected clusters); ngram {near.ngram}, num_perm {near.num_perm}, "
        f"threshold {near.threshold}, {bands} bands x {rows} rows; num_proc {args.num_proc or 'every core'}"
    )
    print(f"dsc   signatures  {t_sig:7.2f} s  {n / t_sig:9,.0f} records/s")
    print(f"dsc   LSH+clusters{t_lsh:7.2f} s  {n / t_lsh:9,.0f} records/s")
    print(f"dsc   whole pass  {t_whole:7.2f} s  {n / t_whole:9,.0f} records/s   precision {p:.4f} recall {r:.4f}")
    m = args.naive_records or n
    n_sig, n_lsh, naive_clusters = naive(texts[:m], near.ngram, near.num_perm, near.seed, near.threshold)
    np_, nr = scores(naive_clusters, truth(groups[:m]))
    print(f"naive signatures  {n_sig:7.2f} s  {m / n_sig:9,.0f} records/s   ({m} records)")
    print(f"naive LSH+clusters{n_lsh:7.2f} s  {m / n_lsh:9,.0f} records/s")
    print(f"naive whole pass  {n_sig + n_lsh:7.2f} s  {m / (n_sig + n_lsh):9,.0f} records/s   precision {np_:.4f} recall {nr:.4f}")
    print(f"end to end: dsc is {(n / t_whole) / (m / (n_sig + n_lsh)):.1f}x the naive loop (records/s)")
    print(
        f"dedup state: {state / n:.0f} bytes/record in memory (source location, exact key, length, split key, parent, text "
        f"offset), {on_disk / n:.0f} on disk ({near.num_perm} x 4 signature + compared text); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
