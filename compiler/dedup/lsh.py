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


WEIGHTS = (0.1, 0.9)
"""(false positive, false negative) weights of the band search: a missed near-copy costs nine times a wasted check."""
TIE = 3e-8
"""Shapes whose weighted errors lie closer than this may rank either way in datasketch: it integrates each area with
scipy's `quad` to 1.49e-8 (its default tolerance; up to 4.4e-10 off on the test grid, where this module's areas are
exact to ~1e-15), so the difference of two errors is good to twice that. On such a tie `band_shape` asks datasketch."""


@lru_cache(maxsize=4)
def _nodes(count: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(count)


def _pairs(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (bands, rows) with bands x rows <= num_perm, in datasketch's search order (bands, then rows, ascending)."""
    bands = np.repeat(np.arange(1, num_perm + 1), [num_perm // b for b in range(1, num_perm + 1)])
    rows = np.concatenate([np.arange(1, num_perm // b + 1) for b in range(1, num_perm + 1)])
    return bands, rows


def _miss_integral(lo: float, hi: float, bands: np.ndarray, rows: np.ndarray, num_perm: int) -> np.ndarray:
    """Integral over [lo, hi] of (1 - s^rows)^bands per pair, the chance that a pair of similarity s shares no band.

    Exact up to rounding: the integrand is a polynomial of degree bands x rows <= num_perm, and Gauss-Legendre with
    num_perm // 2 + 1 nodes integrates every polynomial of degree 2 x (num_perm // 2) + 1 >= num_perm exactly.
    One rows value at a time, for all of its bands values: small arrays (one array over every pair took seconds at
    num_perm 1024)."""
    x, w = _nodes(num_perm // 2 + 1)
    s = (hi - lo) / 2 * x + (hi + lo) / 2
    by_shape = np.zeros((num_perm + 1, num_perm + 1))  # [rows, bands]
    with np.errstate(divide="ignore"):  # s = 1 at a threshold of 1: log(0), and the empty interval weighs 0
        for r in range(1, num_perm + 1):
            most = num_perm // r
            lonely = np.log1p(-(s**r))  # log(1 - s^r) at each node
            by_shape[r, 1 : most + 1] = np.exp(np.outer(np.arange(1, most + 1), lonely)) @ w
    return by_shape[rows, bands] * ((hi - lo) / 2)


@lru_cache(maxsize=4)
def band_areas(threshold: float, num_perm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bands, rows, false positive area, false negative area) of every band shape, in datasketch's search order: the
    area under the S-curve 1 - (1 - s^rows)^bands below the threshold (pairs that share a band but should not), and
    the area above the curve from the threshold up (pairs that should but share none). Read-only arrays."""
    bands, rows = _pairs(num_perm)
    false_positive = threshold - _miss_integral(0.0, threshold, bands, rows, num_perm)
    false_negative = _miss_integral(threshold, 1.0, bands, rows, num_perm)
    for array in (bands, rows, false_positive, false_negative):
        array.flags.writeable = False
    return bands, rows, false_positive, false_negative


def optimal_param(threshold: float, num_perm: int, weights: tuple[float, float] = WEIGHTS) -> tuple[tuple[int, int], float]:
    """datasketch's `_optimal_param` in numpy, without scipy: the (bands, rows) of least weighted error (the first in
    search order on a tie), and how far the runner-up's error lies above it."""
    bands, rows, false_positive, false_negative = band_areas(threshold, num_perm)
    error = weights[0] * false_positive + weights[1] * false_negative
    best = int(np.argmin(error))
    runner_up = np.partition(error, 1)[1] if len(error) > 1 else np.inf
    return (int(bands[best]), int(rows[best])), float(runner_up - error[best])


@lru_cache(maxsize=16)
def band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's `MinHashLSH(threshold, num_perm, weights=WEIGHTS)` picks (a test holds them
    equal on a dense grid): it weighs false positives and false negatives over the S-curve. Computed here, since
    datasketch's search imports scipy (over a second) and integrates each of hundreds of shapes with `quad`; on a
    numerical tie (margin under TIE) datasketch itself decides. Raises datasketch's ValueError when fewer than 2
    bands win (a threshold near 1 with few permutations)."""
    shape, margin = optimal_param(threshold, num_perm)
    if margin < TIE:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=WEIGHTS)
        return lsh.b, lsh.r
    if shape[0] < 2:
        raise ValueError("The number of bands are too small (b < 2)")
    return shape


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
