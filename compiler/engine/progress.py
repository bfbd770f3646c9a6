"""Progress bars for streamed phases: on a terminal only (datasets' switch), counting records, total unknown."""

from __future__ import annotations

from contextlib import AbstractContextManager

import datasets
from tqdm.auto import tqdm


def progress(desc: str, total: int | None = None) -> AbstractContextManager[tqdm]:
    """A record counter for one phase, silent where datasets' progress bars are off (not a terminal, `-q`)."""
    return tqdm(total=total, desc=desc, unit=" examples", disable=not datasets.is_progress_bar_enabled())
