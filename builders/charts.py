"""Charts for the report and the diff: matplotlib (Agg) to deterministic, self-contained SVG text.

Packages must be byte-reproducible, so every chart is: the SVG id salt is fixed, no creation date is written, and text
stays SVG text in a generic font family (no font is embedded or fetched). Inputs are numpy arrays already reduced by
the caller; nothing here loops over records.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {"read": "#4c72b0", "invalid": "#c44e52", "duplicate": "#dd8452", "dropped": "#8172b3", "truncated": "#ccb974",
          "kept": "#55a868"}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
SPLIT_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
_STYLE = {
    "svg.hashsalt": "dsc-report",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def to_svg(fig: Figure) -> str:
    """The figure as SVG text with nothing that varies between runs or machines (no date, fixed ids, generic font)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # no DOCTYPE (it names a DTD by URL)
    # With svg.fonttype none matplotlib lists the fonts it measured with; a generic family is all a viewer needs.
    return re.sub(r"font-family: ?[^;\"]*", "font-family: sans-serif", svg)


def _figure(rows: int = 1, cols: int = 1, width: float = 7.5, height: float = 2.6) -> tuple[Figure, np.ndarray]:
    """A figure made without pyplot: no global figure registry, no GUI backend, and pyplot's import time saved."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def _margins(fig: Figure, left: float = 0.7, bottom: float = 0.45, top: float = 0.3, right: float = 0.15, gap: float = 0.6) -> None:
    """Fixed margins in inches: one draw per chart (a layout engine or a tight bounding box draws it again)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap / (width / max(1, len(fig.axes))), hspace=2.5 * gap / height)


def styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Draw and save a chart under the report's rcParams (the SVG id salt is read when saving, so both are inside)."""

    @functools.wraps(draw)
    def run(*args: Any, **kwargs: Any) -> str:
        import matplotlib

        with matplotlib.rc_context(_STYLE):
            return draw(*args, **kwargs)

    return run


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart: its label, value and colour."""

    label: str
    value: int
    color: str


@styled
def bars(items: Sequence[Bar], title: str, xlabel: str = "records") -> str:
    """Horizontal bars top to bottom, each with its count written beside it."""
    fig, axes = _figure(height=max(1.6, 0.32 * len(items) + 0.8))
    ax = axes[0][0]
    y = np.arange(len(items))[::-1]
    values = [b.value for b in items]
    ax.barh(y, values, color=[b.color for b in items])
    ax.set_yticks(y, [b.label for b in items])
    top = max(values, default=0) or 1
    for yi, v in zip(y, values, strict=True):
        ax.text(v + top * 0.01, yi, f"{v:,}", va="center")
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    ax.grid(axis="y", visible=False)
    _margins(fig, left=0.25 + 0.068 * max((len(b.label) for b in items), default=4), right=0.3)
    return to_svg(fig)


@dataclass(frozen=True)
class Series:
    """Values to histogram under one name (a split, a before/after), drawn in one colour."""

    name: str
    values: np.ndarray
    color: str


@dataclass(frozen=True)
class Panel:
    """One histogram panel: its title, the series overlaid on it, and limit lines (name -> x)."""

    title: str
    series: Sequence[Series]
    limits: dict[str, int]


def _bins(panel: Panel, count: int, fraction: bool) -> np.ndarray:
    if fraction:
        return np.linspace(0.0, 1.0, count + 1)
    values = [s.values for s in panel.series if len(s.values)]
    top = max([int(v.max()) for v in values] + list(panel.limits.values()) + [1])
    step = max(1, int(np.ceil((top + 1) / count)))
    return np.arange(0, top + step + 1, step)


@styled
def histograms(panels: Sequence[Panel], cols: int = 3, xlabel: str = "tokens", fraction: bool = False, bins: int = 40) -> str:
    """Overlaid step histograms, a panel per measure, with the limits drawn as dashed lines."""
    rows = max(1, int(np.ceil(len(panels) / cols)))
    fig, axes = _figure(rows, cols, width=max(5.5, 3.3 * cols), height=2.4)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        edges = _bins(panel, bins, fraction)
        for s in panel.series:
            counts, _ = np.histogram(s.values, bins=edges)
            ax.stairs(counts, edges, color=s.color, label=f"{s.name} ({len(s.values):,})", linewidth=1.4)
        for name, x in panel.limits.items():
            ax.axvline(x, color="#c44e52", linestyle="--", linewidth=1)
            ax.text(x, ax.get_ylim()[1], f"{name} {x} ", color="#c44e52", ha="right", va="top", fontsize=7)
        ax.set_title(panel.title, loc="left")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7, frameon=False)
    axes.flat[0].set_ylabel("records")
    _margins(fig)
    return to_svg(fig)


@styled
def counts(values: np.ndarray, title: str, xlabel: str, color: str = "#4c72b0") -> str:
    """A bar per distinct integer value (cluster sizes, spans per record) with its number of records."""
    fig, axes = _figure(width=5.5)
    ax = axes[0][0]
    keys, n = np.unique(values, return_counts=True) if len(values) else (np.array([], dtype=int), np.array([], dtype=int))
    ax.bar(keys.astype(str), n, color=color)
    for k, v in zip(keys.astype(str), n, strict=True):
        ax.text(k, v, f"{v:,}", ha="center", va="bottom", fontsize=7)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.grid(axis="x", visible=False)
    _margins(fig)
    return to_svg(fig)
