"""dsc, the dataset compiler for LLM fine-tuning.

`import dsc` is cheap: the heavy modules (datasets, tokenizers) load on first use of what needs them.

    import dsc
    package = dsc.build("formats/alpaca.yaml", output="build/alpaca")
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("dsc")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from dsc.api import build

__all__ = ["__version__", "build"]


def __getattr__(name: str) -> Any:
    if name in ("build",):
        from dsc import api

        return getattr(api, name)
    raise AttributeError(f"module 'dsc' has no attribute {name!r}")
