"""Dedup's parts and its place in `dsc build`: datasketch-equal signatures, tokens by script, union-find, leakage,
keep rules, the package's duplicates file and manifest, spec errors, and `dsc preview --duplicates`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import xxhash
from conftest import DATA, FORMATS, WORKERS, dsc_cli, run_dsc
from datasketch import LeanMinHash, MinHash
from dsc.compiler.dedup.lsh import find, union
from dsc.compiler.dedup.minhash import (
    batch_signatures,
    exact_keys,
    mix64,
    normalize,
    shingle_hashes,
    signatures,
    text_shingle_hashes,
    tokens,
)
from dsc.compiler.dedup.settings import Near, Normalize


def _alpaca_texts(n: int) -> list[str]:
    records = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:n]
    return [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in records]


def _adgen() -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("ngram", [1, 2, 4])
def test_signatures_equal_datasketch_update_batch(ngram: int) -> None:
    texts = _alpaca_texts(40) + [r["summary"] for r in _adgen()[:40]] + ["", "one"]
    how = Normalize()
    token_lists = [tokens(t, "auto", how) for t in texts]
    hashes, offsets = shingle_hashes(token_lists, ngram)
    ours = signatures(hashes, offsets, 128, 7)
    for i in range(len(texts)):
        m = MinHash(num_perm=128, seed=7, scheme="affine32", hashfunc=int)
        m.update_batch(hashes[offsets[i] : offsets[i + 1]].tolist())
        assert np.array_equal(ours[i], m.hashvalues), texts[i][:40]
    a, b = (LeanMinHash(seed=7, hashvalues=ours[i], scheme="affine32") for i in (0, 1))
    assert a.jaccard(b) == np.mean(ours[0] == ours[1])


def test_tokens_split_by_script_in_one_stream() -> None:
    how = Normalize()
    assert tokens("Ｈｅｌｌｏ, World! 简约外套 mixed ไทย", "auto", how) == [
        "hello", "world", "简", "约", "外", "套", "mixed", "ไ", "ท", "ย",
    ]  # fmt: skip
    assert tokens("简约外套，白色", "word", how) == ["简约外套", "白色"]
    assert tokens("ab c", "char", how) == ["a", "b", "c"]
    assert tokens("Hi, you", "auto", Normalize(punctuation=False, case=False)) == ["Hi", ",", "you"]


def test_a_two_character_chinese_edit_keeps_most_shingles() -> None:
    text = _adgen()[0]["summary"]
    edited = text[:10] + "好好" + text[12:]
    near = Near()
    sig = batch_signatures([text, edited], near, Normalize())
    assert np.mean(sig[0] == sig[1]) > 0.8
    word = batch_signatures([text, edited], Near(shingles="word"), Normalize())
    assert np.mean(word[0] == word[1]) < 0.6


def test_union_find_matches_a_plain_one() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    u, v = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    parent = np.arange(n)
    union(parent, u, v)
    roots = find(parent)
    plain = list(range(n))

    def root(x: int) -> int:
        while plain[x] != x:
            x = plain[x]
        return x

    for a, b in zip(u.tolist(), v.tolist(), strict=True):
        plain[max(root(a), root(b))] = min(root(a), root(b))
    expected = np.array([root(x) for x in range(n)])
    assert np.array_equal(roots, expected)
    assert np.all(roots <= np.arange(n))


def _write_spec(folder: Path, records: list[dict], dedup: str, validation: float = 0.3, extra_fields: str = "") -> Path:
    (folder / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    spec = folder / "spec.yaml"
    spec.write_text(
        "name: dd\nsources: [{path: data.jsonl}]\nfields:\n  content: {type: string, required: true}\n"
        f"  summary: {{type: string, required: true}}\n{extra_fields}"
        'templates:\n  prompt: "问：{{ content }}\\n答："\n  response: "{{ summary }}"\n'
        f"split: {{validation: {validation}, seed: 1}}\ndedup:\n{dedup}\n",
        encoding="utf-8",
    )
    return spec


def _with_copies(n: int, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """n ADGEN records and an exact-after-normalization copy of each of the first n/2; copy row -> original row."""
    rng = random.Random(seed)
    base = _adgen()[:n]
    records = [dict(r) for r in base]
    twin = {}
    for i in range(n // 2):
        copy = dict(base[i])
        copy["summary"] = base[i]["summary"].replace("，", ",") + rng.choice(["", " ", "！"])
        twin[f"data.jsonl#{len(records)}"] = f"data.jsonl#{i}"
        records.append(copy)
    return records, twin


def _package_rows(out: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    rows = {}
    for f in sorted((out / "data").glob("*.parquet")):
        for sid in pq.read_table(f, columns=["source_id"]).column("source_id").to_pylist():
            rows[sid] = f.name.split("-")[0]
    return rows


def test_build_removes_copies_and_validation_leakage(tmp_path: Path) -> None:
    records, twin = _with_copies(200)
    spec = _write_spec(tmp_path, records, "  compare: prompt+response")
    result = dsc_cli("build", str(spec), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    rows = _package_rows(out)
    assert all(not (c in rows and o in rows) for c, o in twin.items()), "a copy and its original both stayed"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    dedup = manifest["dedup"]
    lines = [json.loads(x) for x in (out / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    assert dedup["records"] == len(lines) >= 100
    assert dedup["near"]["datasketch"] == manifest["versions"]["datasketch"]
    assert (dedup["near"]["num_perm"], dedup["near"]["seed"], dedup["near"]["permutation_scheme"]) == (128, 1, "affine32")
    leakage = [x for x in lines if x["reason"] == "leakage"]
    assert dedup["counts"]["leakage"] == len(leakage) > 0
    assert all(rows[x["kept_source_id"]] == "train" and x["split"] == "validation" for x in leakage)
    exact = dedup["counts"]["exact"]
    assert exact["train"] + exact["validation"] == sum(x["reason"] == "exact" for x in lines)
    assert manifest["counts"]["dropped"]["duplicate: leakage"] == len(leakage)
    for line in lines:
        assert line["source_id"] not in rows and line["kept_source_id"] in rows
        assert 0.0 <= line["similarity"] <= 1.0
    assert sum(manifest["counts"]["kept"].values()) == len(records) - len(lines)


def test_scope_leakage_only_cleans_validation(tmp_path: Path) -> None:
    records, twin = _with_copies(200)
    spec = _write_spec(tmp_path, records, "  compare: prompt+response\n  scope: leakage")
    assert dsc_cli("build", str(spec), "-o", str(tmp_path / "out"), "-q").returncode == 0
    rows = _package_rows(tmp_path / "out")
    lines = [json.loads(x) for x in (tmp_path / "out" / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines and all(x["reason"] == "leakage" for x in lines)
    both_train = [c for c, o in twin.items() if rows.get(c) == rows.get(o) == "train"]
    assert both_train, "train copies stay under scope: leakage"
    assert not [c for c, o in twin.items() if {rows.get(c), rows.get(o)} == {"train", "validation"}]


def test_keep_rules(tmp_path: Path) -> None:
    base = _adgen()[:20]
    records = [{**r, "score": 1} for r in base] + [{**r, "summary": r["summary"] + "！", "score": 5} for r in base]
    for keep, want in (("first", "low"), ("longest", "high"), ("{max: score}", "high"), ("{min: score}", "low")):
        folder = tmp_path / keep.strip("{}").replace(": ", "-")
        folder.mkdir()
        spec = _write_spec(folder, records, f"  compare: prompt+response\n  keep: {keep}", 0, "  score: {type: integer}\n")
        assert dsc_cli("build", str(spec), "-o", str(folder / "out"), "-q").returncode == 0
        kept = {int(s.split("#")[1]) for s in _package_rows(folder / "out")}
        assert kept == (set(range(20)) if want == "low" else set(range(20, 40))), keep


@pytest.mark.parametrize(
    ("dedup", "message"),
    [
        ("  compare: sumary", "unknown name 'sumary' (did you mean 'summary'?)"),
        ("  keep: {max: content}", "'content' is not an integer or number field"),
        ("  near: {bands: 8}", "give both bands and rows"),
        ("  near: {bands: 20, rows: 8}", "exceeds num_perm 128"),
        ("  near: {threshold: 0.99, num_perm: 16}", "leaves fewer than 2 LSH bands"),
        ("  near: {shingle: word}", "unknown key 'shingle' (did you mean 'shingles'?)"),
        ("  exact: false\n  near: false", "both off"),
    ],
)
def test_spec_errors_name_the_line(tmp_path: Path, dedup: str, message: str) -> None:
    spec = _write_spec(tmp_path, _adgen()[:3], dedup)
    result = dsc_cli("build", str(spec), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr and f"{spec}:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_same_kept_set_with_worker_processes(tmp_path: Path) -> None:
    records, _twin = _with_copies(300)
    spec = _write_spec(tmp_path, records, "  compare: prompt+response")
    outs = []
    for procs in ("1", "2"):
        out = tmp_path / f"out{procs}"
        cli = dsc_cli if procs == "1" else run_dsc  # one process in this one; the workers from a real CLI process
        assert cli("build", str(spec), "-o", str(out), "-q", "--num-proc", procs, env=WORKERS).returncode == 0
        outs.append(((out / "duplicates.jsonl").read_text(encoding="utf-8"), sorted(_package_rows(out).items())))
    assert outs[0] == outs[1]


def test_builtin_formats_dedup(packages) -> None:
    for name in ("alpaca", "adgen"):
        out = packages(name)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        lines = (out / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()
        assert manifest["dedup"]["records"] == len(lines) > 0, name


def test_preview_shows_clusters_side_by_side() -> None:
    result = dsc_cli("preview", str(FORMATS / "adgen.yaml"), "--duplicates", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("── kept adgen_dev.jsonl#") == 2
    assert "│" in result.stdout and "similarity" in result.stdout
    plain = dsc_cli("preview", str(FORMATS / "gorilla.yaml"), "--duplicates", "2")
    assert plain.returncode == 2 and "no dedup: section" in plain.stderr


def test_dedup_false_turns_a_formats_dedup_off(tmp_path: Path) -> None:
    import dsc

    package = dsc.build(FORMATS / "adgen.yaml", output=tmp_path / "adgen", dedup=False)
    assert package.manifest["dedup"] is None and not (package.path / "duplicates.jsonl").exists()
    assert sum(package.manifest["counts"]["kept"].values()) == 1070


def test_reported_similarity_is_the_one_that_decided(packages) -> None:
    """Near the threshold a MinHash estimate can land on the wrong side (ADGEN line 810: estimate 0.727, exact
    Jaccard 0.788 at threshold 0.75): such pairs report their exact Jaccard, recomputed here from the texts."""
    from dsc.compiler.dedup.lsh import MARGIN
    from dsc.compiler.dedup.minhash import shingle_sets

    near = Near()
    margin = MARGIN * np.sqrt(near.threshold * (1 - near.threshold) / near.num_perm)
    records = {f"adgen_dev.jsonl#{i}": r for i, r in enumerate(_adgen())}
    lines = [json.loads(x) for x in (packages("adgen") / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    measured = [x for x in lines if x["measure"] == "exact" and x["reason"] != "exact"]
    assert measured and all(abs(x["similarity"] - near.threshold) >= margin for x in lines if x["measure"] == "minhash")
    for x in measured:
        a, b = (records[k]["content"] + "\n" + records[k]["summary"] for k in (x["source_id"], x["kept_source_id"]))
        sa, sb = shingle_sets([a, b], near, Normalize())
        both = len(np.intersect1d(sa, sb))
        assert x["similarity"] == round(both / (len(sa) + len(sb) - both), 4), x


TRICKY = [
    "", " ", "  \t\n ", "!!!", "...,,;;", "___", "a_b", "Ｈｅｌｌｏ, World! 简约外套 mixed ไทย", "ﬁ ﬀ Ⅻ ² ½ ß ẞ Σας ΣΑΣ",
    "e\u0301 \u0301start", "\u3000全角\u3000空白\u3000", "한국어 텍스트 ᄀ ᅡ", "x" * 5000 + " y" * 3000, "emoji 😀👍🏽 text",
    "tab\tsep\x0bvt\x1cfs\x1d\x1e\x1f end", "\u200b\u00a0nbsp\u2028ls", "١٢٣ arabic digits ۴", "🄰 ㈱ ㍿", "İstanbul ǅ",
    "end with space ", " lead", "a\x00b",
]  # fmt: skip
NORMALIZE = [Normalize(), Normalize(False, False, False, False), Normalize(punctuation=False), Normalize(whitespace=False)]


def _reference_keys(texts: list[str], how: Normalize) -> list[int]:
    return [xxhash.xxh3_64_intdigest(normalize(t, how).encode()) >> 1 for t in texts]


def _fmix64_fold(h: int, x: int) -> int:
    """One link of the chain in plain integers: murmur3's fmix64 of h * golden ratio + x, modulo 2**64."""
    h = (h * 0x9E3779B97F4A7C15 + x) & (2**64 - 1)
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & (2**64 - 1)
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & (2**64 - 1)
    return h ^ (h >> 33)


def _reference_shingles(texts: list[str], near: Near, how: Normalize) -> tuple[np.ndarray, np.ndarray]:
    """Per token and per text, as the spec describes it: tokens, edge markers, fmix64 chain, 64->32 fold (in Python
    integers, apart from dsc's numpy `mix64`, which a test below holds to this)."""
    pad = near.ngram - 1
    edges = [[xxhash.xxh3_64_intdigest(b"\x00dsc-edge", seed=salt * 64 + i) for i in range(pad)] for salt in (1, 2)]
    hashes, offsets = [], [0]
    for text in texts:
        toks = tokens(text, near.shingles, how)
        stream = edges[0] + [xxhash.xxh3_64_intdigest(t.encode()) for t in toks] + edges[1] if toks else []
        for start in range(len(stream) - pad):
            h = stream[start]
            for k in range(1, near.ngram):
                h = _fmix64_fold(h, stream[start + k])
            hashes.append((h >> 32) ^ (h & 0xFFFFFFFF))
        offsets.append(len(hashes))
    return np.array(hashes, dtype=np.uint32), np.array(offsets, dtype=np.int64)


def test_mix64_is_the_integer_chain_link() -> None:
    rng = np.random.default_rng(5)
    h, x = (rng.integers(0, 2**64, size=500, dtype=np.uint64) for _ in range(2))
    h[:3], x[:3] = [0, 2**64 - 1, 1], [0, 2**64 - 1, 2**63]
    assert mix64(h, x).tolist() == [_fmix64_fold(a, b) for a, b in zip(h.tolist(), x.tolist(), strict=True)]


@pytest.mark.parametrize("how", NORMALIZE)
def test_batch_functions_equal_a_per_text_reference(how: Normalize) -> None:
    rng = random.Random(3)
    alphabet = "ab cD,._-!\t\n\u00e9\u4e2d\u0e01\u0301\u3000\uff21\u00bd\u1100\u1161\uac00\U00020001😀\u0130\u03a3\u2028"
    mixed = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(200)]
    for texts in (TRICKY, mixed, [t for t in TRICKY if "\x00" not in t], _alpaca_texts(30), [""], []):
        assert exact_keys(texts, how) == _reference_keys(texts, how)
        for shingles, ngram in (("auto", 1), ("auto", 3), ("word", 2), ("char", 2)):
            near = Near(shingles=shingles, ngram=ngram)
            ours, expected = text_shingle_hashes(texts, near, how), _reference_shingles(texts, near, how)
            assert np.array_equal(ours[0], expected[0]) and np.array_equal(ours[1], expected[1]), (shingles, ngram)


def test_lone_surrogates_take_the_per_text_path() -> None:
    how = Normalize()
    assert exact_keys(["a\ud800b", "ab"], how) == _reference_keys(["ab", "ab"], how)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate kept as a token cannot be hashed, in bulk or not
        text_shingle_hashes(["a\ud800b"], Near(), Normalize(punctuation=False))
