"""dsc's MinHash permutations and LSH band shapes are datasketch's, computed without importing datasketch (whose LSH
module imports scipy, over a second of every dedup build's start-up): held equal here to real datasketch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch import lsh as datasketch_lsh
from dsc.compiler.dedup.lsh import TIE, WEIGHTS, band_areas, band_shape, optimal_param
from dsc.compiler.dedup.minhash import SCHEME, permutations

THRESHOLDS = [round(0.01 * i, 2) for i in range(1, 100)] + [0.995, 1.0]
"""0.01 to 0.99 in steps of 0.01, and the edge where one band wins (b < 2: datasketch refuses)."""


@pytest.mark.parametrize("num_perm", [16, 17, 100, 128, 256, 1024])
@pytest.mark.parametrize("seed", [0, 1, 7, 42, 12345, 2**31, 2**32 - 1])
def test_permutations_equal_datasketch(num_perm: int, seed: int) -> None:
    a, b = permutations(num_perm, seed)
    theirs = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    assert a.dtype == b.dtype == np.uint32 and (a % 2 == 1).all()
    assert np.array_equal(a, theirs[0]) and np.array_equal(b, theirs[1])


@pytest.fixture(scope="module")
def datasketch_areas() -> Iterator[dict[tuple[str, float, int, int], float]]:
    """datasketch's own false positive and false negative areas (scipy `quad`), recorded as its search computes them
    and reused by every later search at the same threshold: they depend on neither the weights nor num_perm (a
    search over num_perm 256 visits every (b, r) that one over 128 does), and `quad` gives the same value each time."""
    seen: dict[tuple[str, float, int, int], float] = {}
    with pytest.MonkeyPatch.context() as patch:
        for kind in ("false_positive", "false_negative"):
            original = getattr(datasketch_lsh, f"_{kind}_probability")

            def recorded(threshold: float, b: int, r: int, kind: str = kind, original=original) -> float:
                key = (kind, threshold, b, r)
                if key not in seen:
                    seen[key] = original(threshold, b, r)
                return seen[key]

            patch.setattr(datasketch_lsh, f"_{kind}_probability", recorded)
        yield seen


def _datasketch(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int] | None:
    """MinHashLSH's (b, r), or None where it refuses the shape its search found (b < 2)."""
    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    except ValueError as refused:
        assert "b < 2" in str(refused)
        return None
    return lsh.b, lsh.r


@pytest.mark.parametrize("num_perm", [16, 32, 64, 128, 256])
def test_band_shape_equals_datasketch_on_a_dense_grid(num_perm: int, datasketch_areas: dict) -> None:
    """Every threshold of the grid, under dsc's weights and datasketch's default ones: the same (b, r) from the
    numpy search (no fallback), the same refusal where one band wins, and every shape's weighted error within TIE / 2
    of datasketch's (so a margin over TIE, where `band_shape` trusts numpy, cannot hide a different datasketch pick)."""
    for threshold in THRESHOLDS:
        for weights in (WEIGHTS, (0.5, 0.5)):
            theirs = _datasketch(threshold, num_perm, weights)
            ours, _ = optimal_param(threshold, num_perm, weights)
            assert (ours if ours[0] >= 2 else None) == theirs, (threshold, num_perm, weights)
            if weights == WEIGHTS:
                if theirs is None:
                    with pytest.raises(ValueError, match="b < 2"):
                        band_shape(threshold, num_perm)
                else:
                    assert band_shape(threshold, num_perm) == theirs
        bands, rows, false_positive, false_negative = band_areas(threshold, num_perm)
        pairs = list(zip(bands.tolist(), rows.tolist(), strict=True))
        theirs_fp = np.array([datasketch_areas["false_positive", threshold, b, r] for b, r in pairs])
        theirs_fn = np.array([datasketch_areas["false_negative", threshold, b, r] for b, r in pairs])
        assert np.abs(false_positive - theirs_fp).max() < TIE / 2 and np.abs(false_negative - theirs_fn).max() < TIE / 2, threshold


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.5, 1024), (0.75, 1024), (0.9, 512), (0.8, 100), (0.6, 200)])
def test_band_shape_equals_datasketch_off_the_grid(threshold: float, num_perm: int) -> None:
    """The schema's largest num_perm (1024) and sizes that are no power of two."""
    assert band_shape(threshold, num_perm) == _datasketch(threshold, num_perm, WEIGHTS)
    assert optimal_param(threshold, num_perm, (0.5, 0.5))[0] == _datasketch(threshold, num_perm, (0.5, 0.5))


def test_a_numerical_tie_is_left_to_datasketch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes closer than TIE: datasketch's own search decides (its first shape in search order wins a tie)."""
    import dsc.compiler.dedup.lsh as lsh

    monkeypatch.setattr(lsh, "optimal_param", lambda threshold, num_perm: ((99, 99), 0.0))
    lsh.band_shape.cache_clear()
    try:
        assert lsh.band_shape(0.75, 128) == _datasketch(0.75, 128, WEIGHTS) != (99, 99)
    finally:
        lsh.band_shape.cache_clear()
