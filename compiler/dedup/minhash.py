"""Texts -> normalized keys and MinHash signatures, a whole batch at a time.

Signatures are datasketch's: the permutations are those of `datasketch.MinHash(num_perm, seed, scheme="affine32")` and
each signature equals what `MinHash.update_batch` gives for the same shingle hashes (a test holds them to it). What
differs is the batching: shingles of many records are hashed with xxhash and permuted in one numpy call, instead of one
MinHash object (and one `update` per shingle) per record.

Shingles come from one token stream: a run of letters or digits is a token, except that each character of a script
written without spaces (Chinese, Japanese, Korean, Thai, ...) is a token of its own, so mixed text needs no switch.
A shingle is `ngram` consecutive tokens of the text padded with ngram - 1 edge markers at each end.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import chain

import numpy as np
import pyarrow as pa
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
CHUNK = 8192
"""Shingles permuted per numpy call: num_perm x CHUNK x 4 bytes of scratch (4 MiB at 128 permutations)."""


SEP = "\x00"
"""Joins a batch's texts into one string for the bulk passes; a batch that holds it anywhere takes the per-text path."""
_CLASSES = {
    ("auto", True): (f"[{SPACELESS}]", f"[^\\W_{SPACELESS}]"),
    ("auto", False): (f"[{SPACELESS}]|[^\\w\\s]|_", f"[^\\W_{SPACELESS}]"),
    ("word", True): (None, r"[^\W_]"),
    ("word", False): (r"[^\w\s]|_", r"[^\W_]"),
    ("char", True): (r"[^\W_]", None),
    ("char", False): (r"\S", None),
}
"""`_TOKENS` as character classes: (a token of one character, a character of a run that is one token)."""
SINGLE, RUN = 1, 2


@lru_cache(maxsize=1)
def _every_character() -> str:
    return np.arange(sys.maxunicode + 1, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


@lru_cache(maxsize=8)
def _table(pattern: str) -> np.ndarray:
    """Which code points a one-character regex class matches, found by that very regex (so Python's \\w and \\s)."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for match in re.finditer(f"(?:{pattern})+", _every_character()):
        table[match.start() : match.end()] = True
    return table


@lru_cache(maxsize=8)
def _token_table(shingles: str, punctuation: bool) -> np.ndarray:
    """Code point -> 0 (not in a token), SINGLE (a token by itself) or RUN (part of a maximal run that is one token)."""
    single, run = _CLASSES[(shingles, punctuation)]
    table = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    for pattern, kind in ((single, SINGLE), (run, RUN)):
        if pattern is not None:
            table[_table(pattern)] = kind
    table[ord(SEP)] = 0
    return table


def _groups(texts: Sequence[str], how: Normalize) -> Iterator[tuple[list[int], str | None]]:
    """The batch's texts as (indices, joined text after NFKC and case folding), ASCII texts apart from the others.

    Apart, because one non-ASCII character makes the joined string wide and NFKC's ASCII shortcut is lost for all of
    it. The joined text is None for a group that cannot go in bulk (it holds SEP or a lone surrogate)."""
    ascii_ = [i for i, t in enumerate(texts) if t.isascii()]
    other = [i for i, t in enumerate(texts) if not t.isascii()]
    for index in (ascii_, other):
        if not index:
            continue
        joined = SEP.join(texts[i] for i in index)
        if joined.count(SEP) != len(index) - 1 or not _encodable(joined):
            yield index, None
            continue
        if how.nfkc:
            joined = unicodedata.normalize("NFKC", joined)
        if how.case:
            joined = joined.casefold()
        yield index, joined


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _normalized(joined: str, how: Normalize) -> str:
    """`normalize` after NFKC and case folding, over a whole joined group: the same regexes' classes, in numpy."""
    points = _code_points(joined)
    if how.punctuation:
        points = points[~_table(_PUNCT.pattern)[points] | (points == ord(SEP))]
    if how.whitespace:
        points = _squeezed(points)
    return points.tobytes().decode("utf-32-le")


def _squeezed(points: np.ndarray) -> np.ndarray:
    """Each text's whitespace runs as one space, none at either end: `_SPACE.sub(" ", text).strip()` per text."""
    if not len(points):
        return points
    space = _table(_SPACE.pattern)[points]
    at = np.flatnonzero(space & np.concatenate(([True], ~space[:-1])))
    after = np.flatnonzero(space & np.concatenate((~space[1:], [True]))) + 1
    inner = (at > 0) & (after < len(points))
    inner[inner] = (points[at[inner] - 1] != ord(SEP)) & (points[after[inner]] != ord(SEP))
    keep = ~space
    keep[at[inner]] = True
    out = points.copy()
    out[at[inner]] = ord(" ")
    return out[keep]


def normalize(text: str, how: Normalize) -> str:
    """The text as exact dedup compares it (one text; `exact_keys` does a whole batch without a regex pass per text)."""
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
    keys = [0] * len(texts)
    for index, joined in _groups(texts, how):
        normalized = [normalize(texts[i], how) for i in index] if joined is None else _normalized(joined, how).split(SEP)
        for i, text in zip(index, normalized, strict=True):
            keys[i] = xxhash.xxh3_64_intdigest(text.encode()) >> 1
    return keys


def tokens(text: str, shingles: str, how: Normalize) -> list[str]:
    """The token stream near dedup shingles (case and NFKC folded per `how`; punctuation dropped unless kept)."""
    if how.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if how.case:
        text = text.casefold()
    return _TOKENS[(shingles, how.punctuation)].findall(text)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for this num_perm and seed, drawn as
    `MinHash(num_perm, seed, scheme="affine32")` draws them (a test holds them equal), without importing datasketch
    (which imports scipy)."""
    draw = np.random.RandomState(seed)
    a = draw.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


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


def token_hashes(tokens: pa.StringArray | pa.BinaryArray | pa.LargeBinaryArray) -> np.ndarray:
    """xxh3_64 of every token's UTF-8 bytes, hashing each distinct token once (a batch repeats most of its words)."""
    encoded = tokens.cast(pa.binary()).dictionary_encode()
    distinct = np.fromiter(
        (xxhash.xxh3_64_intdigest(t) for t in encoded.dictionary.to_pylist()), dtype=np.uint64, count=len(encoded.dictionary)
    )
    return distinct[_positions(encoded.indices)]


def _positions(indices: pa.Int32Array) -> np.ndarray:
    """A dictionary's int32 indices (no nulls) as numpy, read from the Arrow buffer: pyarrow's `to_numpy` imports
    pandas, 0.7 s in a process that has no other use for it."""
    assert indices.type == pa.int32() and indices.null_count == 0
    return np.frombuffer(indices.buffers()[1], dtype=np.int32, count=len(indices), offset=indices.offset * 4)


def utf8_array(strings: Sequence[str]) -> pa.BinaryArray:
    """The strings' UTF-8 bytes as one Arrow array, built from buffers: `pa.array(strings)` would import pandas (0.7 s
    in a process that has no other use for it, such as `dsc generate`). A lone surrogate raises UnicodeEncodeError."""
    encoded = [s.encode() for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(encoded), buffers)


def shingle_hashes(token_lists: Sequence[list[str]], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle of every text's tokens, and each text's [start, end) offsets into them."""
    counts = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    return _shingles(token_hashes(utf8_array(list(chain.from_iterable(token_lists)))), counts, ngram)


def _shingles(hashes: np.ndarray, counts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes from token hashes (texts one after the other, `counts` tokens each).

    Each non-empty text is padded with ngram - 1 edge markers on both sides, so every token sits in exactly `ngram`
    shingles: a word replaced at the end of a text weighs what one in the middle does (without padding it would touch
    one shingle, and a template whose last word varies would look like a near-copy of itself). The n-gram hash chains
    token hashes through fmix64 over the whole batch at once; positions that straddle two texts are computed and
    thrown away, which is cheaper than slicing per text."""
    pad = ngram - 1
    padded = np.where(counts > 0, counts + 2 * pad, 0)
    starts = np.concatenate(([0], np.cumsum(padded)[:-1])).astype(np.int64)
    flat = np.empty(int(padded.sum()), dtype=np.uint64)
    text = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    flat[starts[text] + pad + np.arange(len(hashes)) - first[text]] = hashes
    filled = starts[counts > 0]
    edge = np.arange(pad)
    flat[(filled[:, None] + edge).ravel()] = np.tile(np.array(_sentinels(pad, 1), dtype=np.uint64), len(filled))
    tail = filled + pad + counts[counts > 0]
    flat[(tail[:, None] + edge).ravel()] = np.tile(np.array(_sentinels(pad, 2), dtype=np.uint64), len(filled))
    gram = flat
    for k in range(1, ngram):
        gram = mix64(gram[: len(flat) - k], flat[k:])
    per_text = np.where(counts > 0, counts + pad, 0)
    offsets = np.concatenate(([0], np.cumsum(per_text))).astype(np.int64)
    rows = np.repeat(np.arange(len(counts)), per_text)
    picks = gram[starts[rows] + np.arange(len(rows)) - offsets[rows]]
    folded = ((picks >> np.uint64(32)) ^ (picks & np.uint64(0xFFFFFFFF))).astype(np.uint32)
    return folded, offsets


def text_shingle_hashes(texts: Sequence[str], near: Near, how: Normalize) -> tuple[np.ndarray, np.ndarray]:
    """`shingle_hashes` of the texts' `tokens`, found for a whole batch at once with no Python object per token."""
    hashes, counts = [], np.zeros(len(texts), dtype=np.int64)
    order = []
    for index, joined in _groups(texts, how):
        if joined is None:
            lists = [tokens(texts[i], near.shingles, how) for i in index]
            group_counts = np.array([len(t) for t in lists], dtype=np.int64)
            hashes.append(token_hashes(utf8_array(list(chain.from_iterable(lists)))))
        else:
            group_hashes, group_counts = _bulk_tokens(joined, near.shingles, how.punctuation)
            hashes.append(group_hashes)
        counts[index] = group_counts
        order.append(np.repeat(np.asarray(index, dtype=np.int64), group_counts))
    if not hashes:
        return _shingles(np.zeros(0, dtype=np.uint64), counts, near.ngram)
    in_text_order = np.argsort(np.concatenate(order), kind="stable")
    return _shingles(np.concatenate(hashes)[in_text_order], counts, near.ngram)


def _bulk_tokens(joined: str, shingles: str, punctuation: bool) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes of a joined group and each text's token count: `tokens` as numpy over code points.

    A token is a maximal run of RUN characters or one SINGLE character (the classes are disjoint, so this is what the
    leftmost regex match finds). The tokens' UTF-8 bytes are gathered into one Arrow array, never into Python strings."""
    points = _code_points(joined)
    kind = _token_table(shingles, punctuation)[points]
    run = kind == RUN
    run_start = run & np.concatenate(([True], ~run[:-1]))
    run_end = np.flatnonzero(run & np.concatenate((~run[1:], [True]))) + 1
    starts = np.flatnonzero(run_start | (kind == SINGLE))
    ends = starts + 1
    ends[run[starts]] = run_end
    bounds = np.concatenate(([0], np.flatnonzero(points == ord(SEP)), [len(points)]))
    counts = np.diff(np.searchsorted(starts, bounds)).astype(np.int64)
    if joined.isascii():  # one byte per code point: positions are byte offsets
        data, at = points.astype(np.uint8)[kind > 0], np.arange(len(points) + 1)
    else:
        width = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
        at = np.concatenate(([0], np.cumsum(width)))
        data = np.frombuffer(joined.encode(), dtype=np.uint8)[np.repeat(kind > 0, width)]
    offsets = np.concatenate(([0], np.cumsum(at[ends] - at[starts]))).astype(np.int32)
    array = pa.BinaryArray.from_buffers(pa.binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return token_hashes(array), counts


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(texts, num_perm) uint32 MinHash signatures; an empty text keeps datasketch's empty value (all 2^32 - 1).

    The scratch is (num_perm, CHUNK): each permutation's values lie contiguous, so the per-text minimum reduces along
    the fast axis (several times quicker than reducing rows of a (CHUNK, num_perm) block)."""
    a, b = permutations(num_perm, seed)
    n = len(offsets) - 1
    out = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(hashes) == 0:
        return out
    mixed = _fmix32(hashes)
    owner = np.repeat(np.arange(n), np.diff(offsets))
    scratch = np.empty((num_perm, CHUNK), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for lo in range(0, len(mixed), CHUNK):
            hi = min(lo + CHUNK, len(mixed))
            permuted = scratch[:, : hi - lo]
            np.multiply(a[:, None], mixed[None, lo:hi], out=permuted)
            np.add(permuted, b[:, None], out=permuted)
            rows = owner[lo:hi]
            cuts = np.concatenate(([0], np.nonzero(rows[1:] != rows[:-1])[0] + 1))
            mins = np.minimum.reduceat(permuted, cuts, axis=1)
            ids = rows[cuts]
            out[ids] = np.minimum(out[ids], mins.T)
    return out


def shingle_sets(texts: Sequence[str], near: Near, how: Normalize) -> list[np.ndarray]:
    """Each text's distinct shingle hashes, sorted: what a signature estimates, for an exact Jaccard."""
    hashes, offsets = text_shingle_hashes(texts, near, how)
    return [np.unique(hashes[offsets[i] : offsets[i + 1]]) for i in range(len(texts))]


def batch_signatures(texts: Sequence[str], near: Near, how: Normalize) -> np.ndarray:
    """Signatures of a batch of texts under the spec's shingling."""
    hashes, offsets = text_shingle_hashes(texts, near, how)
    return signatures(hashes, offsets, near.num_perm, near.seed)
