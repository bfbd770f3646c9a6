"""Progress bars for streamed phases: on a terminal only, counting records, total unknown. They follow datasets'
switch (its environment variable, or its function once datasets is imported) without importing datasets (~0.8 s)."""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager

from tqdm.auto import tqdm

SWITCH = "HF_DATASETS_DISABLE_PROGRESS_BARS"
TRUE = {"1", "ON", "YES", "TRUE"}


def bars_enabled() -> bool:
    """datasets' switch: its function where datasets is imported, else its environment variable."""
    loaded = sys.modules.get("datasets")
    if loaded is not None:
        return bool(loaded.is_progress_bar_enabled())
    return os.environ.get(SWITCH, "").upper() not in TRUE


def disable_bars() -> None:
    """Bars off, for dsc's phases and for datasets' own (now or once it is imported, in this process and its
    children)."""
    os.environ[SWITCH] = "1"
    loaded = sys.modules.get("datasets")
    if loaded is not None:
        loaded.disable_progress_bars()


def progress(desc: str, total: int | None = None) -> AbstractContextManager[tqdm]:
    """A record counter for one phase, silent where the bars are off (not a terminal, `-q`)."""
    return tqdm(total=total, desc=desc, unit=" examples", disable=not bars_enabled())
