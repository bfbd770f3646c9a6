"""Charts for the report and the diff, written directly as deterministic, self-contained SVG text (builders/svg.py).

Packages must be byte-reproducible and every build draws its report's charts, so they are drawn here rather than by a
plotting library (matplotlib took 1.5-2 s for a report's 7 charts, its import included; this takes about 0.03 s): the
same inputs give the same bytes, and text is SVG text in a generic font family. Inputs are numpy arrays already reduced
by the caller; nothing here loops over records (histograms are numpy's, loops run over bins, bars and ticks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from dsc.builders.svg import Canvas, coordinate, text_width, tick_label, tick_step, ticks

COLORS = {"read": "#4c72b0", "invalid": "#c44e52", "duplicate": "#dd8452", "dropped": "#8172b3", "truncated": "#ccb974",
          "kept": "#55a868"}
SPLIT_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
LIMIT = "#c44e52"
AXIS = "#444444"
GRID = "#e4e4e4"
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, SMALL_SIZE = 13, 12, 11, 10


@dataclass(frozen=True)
class _Axes:
    """A plot area in pixels and the data range it shows; maps data to pixels (y grows upwards)."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value: float | np.ndarray) -> float | np.ndarray:
        low, high = self.x_range
        return self.left + (value - low) / ((high - low) or 1) * (self.right - self.left)

    def y(self, value: float | np.ndarray) -> float | np.ndarray:
        low, high = self.y_range
        return self.bottom - (value - low) / ((high - low) or 1) * (self.bottom - self.top)


def _y_ticks(top: float) -> tuple[np.ndarray, float]:
    """Round count ticks from 0 to the first one at or above `top` (at least 1), and their step."""
    step = tick_step(max(top, 1), 4, integer=True)
    return ticks(0, math.ceil(max(top, 1) / step) * step, step), step


def _tick_labels_width(values: np.ndarray, step: float) -> float:
    return max((text_width(tick_label(v, step), TICK_SIZE) for v in values), default=0.0)


def _x_axis(canvas: Canvas, ax: _Axes, label: str, integer: bool) -> None:
    """Round ticks (whole numbers if `integer`) along the x range with their labels and grid lines, the bottom spine and the
    axis label."""
    low, high = ax.x_range
    room = max(50, text_width(f"{high:,.0f}", TICK_SIZE) + 16)  # the widest label and some air between two
    step = tick_step(high - low, max(2, int((ax.right - ax.left) / room)), integer)
    for value in ticks(low, high, step):
        x = float(ax.x(value))
        canvas.line(x, ax.top, x, ax.bottom, GRID)
        canvas.line(x, ax.bottom, x, ax.bottom + 4, AXIS)
        canvas.text(x, ax.bottom + 16, tick_label(value, step), TICK_SIZE, "middle")
    canvas.line(ax.left, ax.bottom, ax.right, ax.bottom, AXIS)
    canvas.text((ax.left + ax.right) / 2, ax.bottom + 33, label, LABEL_SIZE, "middle")


def _y_axis(canvas: Canvas, ax: _Axes, values: np.ndarray, step: float, label: str | None) -> None:
    """The count ticks with their labels and grid lines, the left spine and (where given) the axis label."""
    for value in values:
        y = float(ax.y(value))
        canvas.line(ax.left, y, ax.right, y, GRID)
        canvas.line(ax.left - 4, y, ax.left, y, AXIS)
        canvas.text(ax.left - 7, y + 4, tick_label(value, step), TICK_SIZE, "end")
    canvas.line(ax.left, ax.top, ax.left, ax.bottom, AXIS)
    if label:
        x = ax.left - 12 - _tick_labels_width(values, step)
        canvas.text(x, (ax.top + ax.bottom) / 2, label, LABEL_SIZE, "middle", rotate=True)


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart: its label, value and colour."""

    label: str
    value: int
    color: str


def bars(items: Sequence[Bar], title: str, xlabel: str = "records") -> str:
    """Horizontal bars top to bottom, each with its count written beside it (the funnel: every stage and reason)."""
    pitch, thickness, top = 26, 18, 36
    left = 12 + max((text_width(b.label, LABEL_SIZE) for b in items), default=0) + 10
    width = max(750, left + 420)  # long reasons widen the chart rather than squeeze the bars
    height = top + pitch * max(1, len(items)) + 48
    most = max((b.value for b in items), default=0) or 1
    ax = _Axes(left, top, width - 20, height - 48, (0, most * 1.15), (0, 1))
    canvas = Canvas(width, height)
    canvas.text(12, 20, title, TITLE_SIZE, bold=True)
    _x_axis(canvas, ax, xlabel, integer=True)
    for i, b in enumerate(items):
        middle = top + pitch * (i + 0.5)
        end = float(ax.x(b.value))
        canvas.rect(ax.left, middle - thickness / 2, end - ax.left, thickness, b.color)
        canvas.text(ax.left - 8, middle + 4, b.label, LABEL_SIZE, "end")
        canvas.text(end + 4, middle + 4, f"{b.value:,}", TICK_SIZE)
    canvas.line(ax.left, ax.top, ax.left, ax.bottom, AXIS)
    return canvas.svg()


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
    """Bin edges: `count` bins over [0, 1] for a fraction, else integer-wide bins from 0 past the largest value or limit."""
    if fraction:
        return np.linspace(0.0, 1.0, count + 1)
    values = [s.values for s in panel.series if len(s.values)]
    top = max([int(v.max()) for v in values] + list(panel.limits.values()) + [1])
    step = max(1, int(np.ceil((top + 1) / count)))
    return np.arange(0, top + step + 1, step)


def _legend_rows(series: Sequence[Series], room: float) -> list[list[tuple[Series, str, float]]]:
    """The legend's entries (series, text, width), wrapped into rows that fit `room` pixels."""
    rows: list[list[tuple[Series, str, float]]] = [[]]
    used = 0.0
    for s in series:
        text = f"{s.name} ({len(s.values):,})"
        wide = 22 + text_width(text, SMALL_SIZE) + 14
        if rows[-1] and used + wide > room:
            rows.append([])
            used = 0.0
        rows[-1].append((s, text, wide))
        used += wide
    return rows


@dataclass(frozen=True)
class _Histogram:
    """A panel's numbers before drawing: bin edges, counts per series, count ticks, and its legend's rows."""

    panel: Panel
    edges: np.ndarray
    counts: list[np.ndarray]
    y_ticks: np.ndarray
    y_step: float
    inset: float
    legend: list[list[tuple[Series, str, float]]]


def histograms(panels: Sequence[Panel], cols: int = 3, xlabel: str = "tokens", fraction: bool = False, bins: int = 40) -> str:
    """Overlaid step histograms, a panel per measure (each with its own count axis), the limits as dashed lines."""
    rows = max(1, math.ceil(len(panels) / cols))
    width = max(550, 330 * cols)
    cell = (width - 8) / cols
    drawn = []
    for i, panel in enumerate(panels):
        edges = _bins(panel, bins, fraction)
        counts = [np.histogram(s.values, bins=edges)[0] for s in panel.series]
        y_ticks, y_step = _y_ticks(max((int(c.max()) for c in counts), default=0))
        inset = 8 + (20 if i % cols == 0 else 0) + _tick_labels_width(y_ticks, y_step) + 8
        drawn.append(_Histogram(panel, edges, counts, y_ticks, y_step, inset, _legend_rows(panel.series, cell - inset - 24)))
    header = 24 + 15 * max((len(h.legend) for h in drawn), default=1) + 10
    row_height = header + 160 + 44
    canvas = Canvas(width, rows * row_height + 6)
    for i, h in enumerate(drawn):
        x0, y0 = 4 + cell * (i % cols), row_height * (i // cols)
        ax = _Axes(x0 + h.inset, y0 + header, x0 + cell - 24, y0 + header + 160, (float(h.edges[0]), float(h.edges[-1])),
                   (0, float(h.y_ticks[-1])))
        canvas.text(ax.left, y0 + 18, h.panel.title, TITLE_SIZE, bold=True)
        for r, row in enumerate(h.legend):
            x, baseline = ax.left, y0 + 24 + 15 * (r + 1)
            for s, text, wide in row:
                canvas.line(x, baseline - 4, x + 16, baseline - 4, s.color, 2.5)
                canvas.text(x + 22, baseline, text, SMALL_SIZE)
                x += wide
        _x_axis(canvas, ax, xlabel, integer=not fraction)
        _y_axis(canvas, ax, h.y_ticks, h.y_step, "records" if i % cols == 0 else None)
        xs, base = ax.x(h.edges).tolist(), coordinate(ax.y(0))
        for s, count in zip(h.panel.series, h.counts, strict=True):
            steps = "".join(f"V{coordinate(y)}H{coordinate(x)}" for y, x in zip(ax.y(count).tolist(), xs[1:], strict=True))
            canvas.path(f"M{coordinate(xs[0])} {base}{steps}V{base}", s.color, 1.8)
        for k, (name, limit) in enumerate(h.panel.limits.items()):
            x, text = float(ax.x(limit)), f"{name} {limit}"  # as the spec writes it
            canvas.line(x, ax.top, x, ax.bottom, LIMIT, 1.3, "5 3")
            fits_left = x - 4 - text_width(text, SMALL_SIZE) >= ax.left
            canvas.text(x - 4 if fits_left else x + 4, ax.top + 12 + 13 * k, text, SMALL_SIZE, "end" if fits_left else "start", LIMIT,
                        halo=True)
    return canvas.svg()


def counts(values: np.ndarray, title: str, xlabel: str, color: str = "#4c72b0") -> str:
    """A bar per distinct integer value (cluster sizes, spans per record) with its number of records written above it."""
    keys, n = np.unique(values, return_counts=True) if len(values) else (np.array([], dtype=int), np.array([], dtype=int))
    y_ticks, y_step = _y_ticks(int(n.max()) * 1.12 if len(n) else 0)
    width, height, top = 550, 260, 36
    ax = _Axes(8 + 20 + _tick_labels_width(y_ticks, y_step) + 8, top, width - 12, height - 46, (0, max(1, len(keys))),
               (0, float(y_ticks[-1])))
    canvas = Canvas(width, height)
    canvas.text(ax.left, 20, title, TITLE_SIZE, bold=True)
    _y_axis(canvas, ax, y_ticks, y_step, "records")
    slot = (ax.right - ax.left) / max(1, len(keys))
    names = [f"{k:,}" for k in keys.tolist()]
    every = max(1, math.ceil((max((text_width(k, TICK_SIZE) for k in names), default=0) + 8) / slot))
    show_counts = slot >= max((text_width(f"{v:,}", SMALL_SIZE) for v in n.tolist()), default=0) + 2
    thickness = min(0.8 * slot, 60)
    for i, (name, v) in enumerate(zip(names, n.tolist(), strict=True)):
        middle, bar_top = float(ax.x(i + 0.5)), float(ax.y(v))
        canvas.rect(middle - thickness / 2, bar_top, thickness, ax.bottom - bar_top, color)
        if show_counts:
            canvas.text(middle, bar_top - 3, f"{v:,}", SMALL_SIZE, "middle")
        if i % every == 0:
            canvas.line(middle, ax.bottom, middle, ax.bottom + 4, AXIS)
            canvas.text(middle, ax.bottom + 16, name, TICK_SIZE, "middle")
    canvas.line(ax.left, ax.bottom, ax.right, ax.bottom, AXIS)
    canvas.text((ax.left + ax.right) / 2, ax.bottom + 33, xlabel, LABEL_SIZE, "middle")
    return canvas.svg()
