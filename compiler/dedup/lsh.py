"""Near-duplicate candidates and clusters over a whole set of MinHash signatures, in numpy.

LSH: each band of `rows` signature values is hashed to 64 bits; records that share a band hash land in one bucket, and
each member of a bucket is paired with the bucket's first (lowest index) member. Pairs are checked against the
threshold on their estimated Jaccard (the share of equal signature values, as `MinHash.jaccard` computes it) before
they join a cluster, so LSH's false positives never merge records. Clusters are a union-find whose roots are the
smallest index of each cluster, so the result does not depend on the order edges arrive in.

Memory: the parent array (8 bytes per record), and per band one hash, one sort order and a few index arrays (~40
bytes per record), freed before the next band. The signatures (num_perm x 4 bytes per record) may stay on disk (a
`dsc.compiler.engine.spill.RowFile`): they are read a block of rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from dsc.compiler.dedup.minhash import mix64

Measure = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Exact Jaccard of row pairs (u[i], v[i])."""
Pairs = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Groups equal keys into pairs (`buckets`, or an engine's distributed version of it)."""
MARGIN = 3.0
"""Estimates within this many standard errors of the threshold are settled by an exact Jaccard."""
VERIFY_CHUNK = 1 << 13
"""Candidate pairs compared per numpy call (their signature rows, read from disk, and the scratch are held at once)."""
BLOCK_ROWS = 1 << 16
"""Records whose band is hashed at a time."""


@lru_cache(maxsize=16)
def band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH picks for this threshold: it weighs false positives and false
    negatives equally over the S-curve."""
    from datasketch import MinHashLSH  # here, not at import: datasketch pulls in scipy (0.3 s) for builds without dedup

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


def find(parent: np.ndarray) -> np.ndarray:
    """Compress every path so each entry points at its root (in place); returns `parent`."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent[:] = grand


def union(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    """Join the clusters of each pair (u[i], v[i]); `parent` must be compressed (see `find`) and stays so.

    Each round hooks the larger root of every still-split pair under the smallest root it meets, then compresses;
    pointers only ever decrease, so no cycle can form."""
    while len(u):
        ru, rv = parent[u], parent[v]
        split = ru != rv
        u, v, ru, rv = u[split], v[split], ru[split], rv[split]
        if not len(u):
            return
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        find(parent)


def similarity(signatures: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of each pair: the share of equal signature values."""
    out = np.empty(len(u), dtype=np.float64)
    for lo in range(0, len(u), VERIFY_CHUNK):
        hi = lo + VERIFY_CHUNK
        equal = signatures[u[lo:hi]] == signatures[v[lo:hi]]
        out[lo:hi] = equal.sum(axis=1) / signatures.shape[1]
    return out


def settled(signatures: np.ndarray, u: np.ndarray, v: np.ndarray, threshold: float, measure: Measure) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's Jaccard as dedup decides on it, and which of them are exact: the signature estimate, unless it
    lies within MARGIN standard errors of the threshold; those few pairs get `measure`, the exact Jaccard."""
    margin = MARGIN * np.sqrt(threshold * (1 - threshold) / signatures.shape[1])
    value = similarity(signatures, u, v)
    unsure = np.abs(value - threshold) < margin
    if unsure.any():
        value[unsure] = measure(u[unsure], v[unsure])
    return value, unsure


def buckets(keys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first member of the bucket, other member) for every bucket of equal keys; `members` names the rows."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    opens = np.ones(len(order), dtype=bool)
    opens[1:] = ordered[1:] != ordered[:-1]
    heads = members[order[opens]][np.cumsum(opens) - 1]
    return heads[~opens], members[order[~opens]]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two shingle sets, each a sorted array of distinct hashes."""
    both = np.intersect1d(a, b, assume_unique=True).size
    return both / max(1, a.size + b.size - both)


def band_keys(block: np.ndarray) -> np.ndarray:
    """64-bit hash of each row of a (records, rows) band of signatures."""
    key = np.zeros(len(block), dtype=np.uint64)
    for column in block.T:
        key = mix64(key, column.astype(np.uint64))
    return key


def _band(signatures: np.ndarray, candidates: np.ndarray, columns: slice) -> np.ndarray:
    """The band keys of the candidate rows, a block of rows at a time."""
    keys = np.empty(len(candidates), dtype=np.uint64)
    for lo in range(0, len(candidates), BLOCK_ROWS):
        keys[lo : lo + BLOCK_ROWS] = band_keys(signatures[candidates[lo : lo + BLOCK_ROWS], columns])
    return keys


def near_clusters(
    parent: np.ndarray,
    signatures: np.ndarray,
    candidates: np.ndarray,
    threshold: float,
    bands: int,
    rows: int,
    measure: Measure,
    pairs: Pairs | None = None,
) -> None:
    """Add to `parent` the near-duplicate pairs among the `candidates` rows: a shared band and Jaccard >= threshold.

    The signature estimate decides a pair unless it lies within MARGIN standard errors of the threshold; those few
    pairs are decided by `measure`, the exact Jaccard of their shingle sets, so a template with a one-word filler
    (true Jaccard 0.7) does not pass on the luck of an estimate. Pairs already in one cluster (exact copies, or joined
    by an earlier band) are not compared again."""
    for band in range(bands):
        u, v = (pairs or buckets)(_band(signatures, candidates, slice(band * rows, (band + 1) * rows)), candidates)
        open_pairs = parent[u] != parent[v]
        u, v = u[open_pairs], v[open_pairs]
        close = settled(signatures, u, v, threshold, measure)[0] >= threshold
        union(parent, u[close], v[close])
