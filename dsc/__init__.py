"""dsc, the dataset compiler for LLM fine-tuning.

`import dsc` is cheap: the heavy modules (datasets, tokenizers) load on first use of what needs them.

    import dsc
    package = dsc.build("formats/alpaca.yaml", output="build/alpaca")
    dataset, manifest = dsc.load("build/alpaca")          # or a Hub repo id: dsc.load("user/alpaca")
    trainer_collator = dsc.collator(tokenizer)            # pads input_ids with the pad id, labels with -100
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# One import root: the core lives in `dsc.compiler` and `dsc.builders`. An installed wheel ships them inside this
# package; a source checkout keeps them as top-level folders beside dsc/ (the repository's layout), found from here.
_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "compiler").is_dir() and (_CHECKOUT / "compiler" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - a package's __path__

try:
    __version__ = metadata.version("dsc")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from dsc.api import build
    from dsc.loading import load
    from dsc.padding import collator

__all__ = ["__version__", "build", "collator", "load"]

_LAZY = {"build": "dsc.api", "load": "dsc.loading", "collator": "dsc.padding"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dsc' has no attribute {name!r}")
