"""Texts -> normalized keys and MinHash signatures, a whole batch at a time.

Signatures are datasketch's: the permutations come from `datasketch.MinHash(num_perm, seed, scheme="affine32")` and
each signature equals what `MinHash.update_batch` gives for the same shingle hashes (a test holds them to it). What
differs is the batching: shingles of many records are hashed with xxhash and permuted in one numpy call, instead of one
MinHash object (and one `update` per shingle) per record.

Shingles come from one token stream: a run of letters or digits is a token, except that each character of a script
written without spaces (Chinese, Japanese, Korean, Thai, ...) is a token of its own, so mixed text needs no switch.
A shingle is `ngram` consecutive tokens of the text padded with ngram - 1 edge markers at each end.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

import numpy as np
import xxhash
from dsc.compiler.dedup.settings import Near, Normalize

SCHEME = "affine32"
HASH_SCHEME = "tokens xxh3_64; n-gram = murmur3 fmix64 chain; shingle hash = 64->32 xor fold; datasketch MinHash scheme affine32"
SPACELESS = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3100-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
"""Thai, Lao, Myanmar, Hangul, Khmer, kana, Bopomofo and Han: scripts written without spaces, one token per character."""
_PUNCT = re.compile(r"[^\w\s]+|_+")
_SPACE = re.compile(r"\s+")
_TOKENS = {
    ("auto", True): re.compile(f"[{SPACELESS}]|[^\\W_{SPACELESS}]+"),
    ("auto", False): re.compile(f"[{SPACELESS}]|[^\\w\\s]|_|[^\\W_{SPACELESS}]+"),
    ("word", True): re.compile(r"[^\W_]+"),
    ("word", False): re.compile(r"[^\w\s]|_|[^\W_]+"),
    ("char", True): re.compile(r"[^\W_]"),
    ("char", False): re.compile(r"\S"),
}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
CHUNK = 1024
"""Shingles permuted per numpy call: CHUNK x num_perm x 4 bytes of scratch (512 KiB at 128 permutations, cache-sized)."""


def normalize(text: str, how: Normalize) -> str:
    """The text as exact dedup compares it."""
    if how.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if how.case:
        text = text.casefold()
    if how.punctuation:
        text = _PUNCT.sub("", text)
    if how.whitespace:
        text = _SPACE.sub(" ", text).strip()
    return text


def exact_keys(texts: Sequence[str], how: Normalize) -> list[int]:
    """A 63-bit key per text (int64 in Arrow): equal keys mean equal normalized text (collisions ~ n^2 / 2^64)."""
    return [xxhash.xxh3_64_intdigest(normalize(t, how).encode()) >> 1 for t in texts]


def tokens(text: str, shingles: str, how: Normalize) -> list[str]:
    """The token stream near dedup shingles (case and NFKC folded per `how`; punctuation dropped unless kept)."""
    if how.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if how.case:
        text = text.casefold()
    return _TOKENS[(shingles, how.punctuation)].findall(text)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for this num_perm and seed."""
    from datasketch import MinHash  # imported on use: datasketch pulls in scipy, which builds without dedup never need

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def mix64(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fold `x` into running hashes `h` (uint64 arrays): murmur3's fmix64 of h * golden + x, wrapping."""
    s, m1, m2 = _FMIX64
    with np.errstate(over="ignore"):
        h = h * _GOLDEN + x
        h = h ^ (h >> s)
        h = h * m1
        h = h ^ (h >> s)
        h = h * m2
    return h ^ (h >> s)


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s1)


def _sentinels(count: int, salt: int) -> list[int]:
    return [xxhash.xxh3_64_intdigest(b"\x00dsc-edge", seed=salt * 64 + i) for i in range(count)]


def shingle_hashes(token_lists: Sequence[list[str]], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle of every text, and each text's [start, end) offsets into them.

    Each non-empty text is padded with ngram - 1 edge markers on both sides, so every token sits in exactly `ngram`
    shingles: a word replaced at the end of a text weighs what one in the middle does (without padding it would touch
    one shingle, and a template whose last word varies would look like a near-copy of itself). The n-gram hash chains
    token hashes through fmix64 over the whole batch at once; positions that straddle two texts are computed and
    thrown away, which is cheaper than slicing per text."""
    pad = ngram - 1
    head, tail = _sentinels(pad, 1), _sentinels(pad, 2)
    counts = np.fromiter((len(t) + 2 * pad if t else 0 for t in token_lists), dtype=np.int64, count=len(token_lists))
    stream = (h for toks in token_lists if toks for h in chain(head, (xxhash.xxh3_64_intdigest(tok.encode()) for tok in toks), tail))
    flat = np.fromiter(stream, dtype=np.uint64, count=int(counts.sum()))
    gram = flat
    for k in range(1, ngram):
        gram = mix64(gram[: len(flat) - k], flat[k:])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    per_text = np.where(counts > 0, counts - pad, 0)
    offsets = np.concatenate(([0], np.cumsum(per_text))).astype(np.int64)
    rows = np.repeat(np.arange(len(counts)), per_text)
    picks = gram[starts[rows] + np.arange(len(rows)) - offsets[rows]]
    folded = ((picks >> np.uint64(32)) ^ (picks & np.uint64(0xFFFFFFFF))).astype(np.uint32)
    return folded, offsets


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(texts, num_perm) uint32 MinHash signatures; an empty text keeps datasketch's empty value (all 2^32 - 1)."""
    a, b = permutations(num_perm, seed)
    n = len(offsets) - 1
    out = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(hashes) == 0:
        return out
    mixed = _fmix32(hashes)
    owner = np.repeat(np.arange(n), np.diff(offsets))
    scratch = np.empty((CHUNK, num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for lo in range(0, len(mixed), CHUNK):
            hi = min(lo + CHUNK, len(mixed))
            permuted = scratch[: hi - lo]
            np.multiply(mixed[lo:hi, None], a[None, :], out=permuted)
            np.add(permuted, b[None, :], out=permuted)
            rows = owner[lo:hi]
            cuts = np.concatenate(([0], np.nonzero(rows[1:] != rows[:-1])[0] + 1))
            mins = np.minimum.reduceat(permuted, cuts, axis=0)
            ids = rows[cuts]
            out[ids] = np.minimum(out[ids], mins)
    return out


def shingle_sets(texts: Sequence[str], near: Near, how: Normalize) -> list[np.ndarray]:
    """Each text's distinct shingle hashes, sorted: what a signature estimates, for an exact Jaccard."""
    hashes, offsets = shingle_hashes([tokens(t, near.shingles, how) for t in texts], near.ngram)
    return [np.unique(hashes[offsets[i] : offsets[i + 1]]) for i in range(len(texts))]


def batch_signatures(texts: Sequence[str], near: Near, how: Normalize) -> np.ndarray:
    """Signatures of a batch of texts under the spec's shingling."""
    hashes, offsets = shingle_hashes([tokens(t, near.shingles, how) for t in texts], near.ngram)
    return signatures(hashes, offsets, near.num_perm, near.seed)
