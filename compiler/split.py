"""The split: a deterministic train/validation assignment that depends on each record's content and the seed.

Each record gets a 63-bit key (int64 in Arrow) hashed from (seed, prompt, response); the validation split is the records with the
smallest keys. The same input always gives the same split, reordering the sources changes nothing, adding records
moves few others, and exact copies land on the same side.
"""

from __future__ import annotations

import numpy as np
import xxhash
from dsc.compiler.batch import Batch, Pass, drops
from dsc.compiler.spec import Split

KEY = "_split_key"


def make_split_key_pass(split: Split) -> Pass:
    """Build the pass that adds `_split_key` to every kept row."""
    seed = split.seed & 0xFFFFFFFFFFFFFFFF

    def split_key(batch: Batch) -> Batch:
        drop = drops(batch)
        keys = [
            xxhash.xxh3_64_intdigest(f"{p}\x00{r}".encode(), seed=seed) >> 1 if d is None else None
            for p, r, d in zip(batch["prompt"], batch["response"], drop, strict=True)
        ]
        return {KEY: keys}

    return split_key


def validation_wanted(split: Split, n: int) -> int:
    """How many of `n` records the spec asks for in validation: a fraction (rounded) or a count."""
    if not split.validation:
        return 0
    return round(split.validation * n) if isinstance(split.validation, float) else int(split.validation)


def validation_size(split: Split, n: int) -> int:
    """How many of `n` records go to validation: `validation_wanted`, never all of them."""
    if n < 2:
        return 0
    return max(0, min(validation_wanted(split, n), n - 1))


def validation_mask(keys: np.ndarray, split: Split) -> np.ndarray:
    """True for the rows that go to validation: the `validation_size` smallest keys (ties by position)."""
    k = validation_size(split, len(keys))
    mask = np.zeros(len(keys), dtype=bool)
    if k:
        mask[np.argsort(keys, kind="stable")[:k]] = True
    return mask
