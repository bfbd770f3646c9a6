"""A small SVG writer for the report's charts: shapes and text as deterministic SVG text, and round axis ticks.

Packages must be byte-reproducible, so the text depends on the drawing alone: coordinates are rounded to a tenth of a
pixel, there are no ids, dates or references outside the file, and text is SVG text in the generic `sans-serif` family
(nothing is embedded or fetched). No font is measured either: widths are estimated from the number of characters.
"""

from __future__ import annotations

import math
import re
from xml.sax.saxutils import escape, quoteattr

import numpy as np

TEXT = "#222222"
# Characters XML 1.0 does not allow, even escaped: a label holding one would make the whole chart unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
CHAR_WIDTH = 0.6
"""Estimated width of a character in ems: about a sans-serif's widest digits and lower case, so labels do not overlap."""


def coordinate(value: float) -> str:
    """A coordinate to a tenth of a pixel, without trailing zeros (and never "-0")."""
    text = f"{round(float(value), 1) + 0.0:.1f}"
    return text[:-2] if text.endswith(".0") else text


def text_width(text: str, size: float) -> float:
    """Estimated width in pixels of `text` at font size `size` (no font is measured: the same on every machine)."""
    return CHAR_WIDTH * size * len(text)


class Canvas:
    """Shapes and text added in drawing order (later ones on top), written out as one SVG document."""

    def __init__(self, width: float, height: float) -> None:
        self.width, self.height = width, height
        self.parts: list[str] = []

    def _add(self, tag: str, attrs: dict[str, str | float | None], content: str | None = None) -> None:
        written = " ".join(f"{k.replace('_', '-')}={quoteattr(v if isinstance(v, str) else coordinate(v))}"
                           for k, v in attrs.items() if v is not None)
        self.parts.append(f"<{tag} {written}/>" if content is None else f"<{tag} {written}>{content}</{tag}>")

    def rect(self, x: float, y: float, width: float, height: float, fill: str) -> None:
        """A filled rectangle (a bar, the background)."""
        self._add("rect", {"x": x, "y": y, "width": width, "height": height, "fill": fill})

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1.0, dash: str | None = None) -> None:
        """A straight line (an axis, a grid line, a tick, a limit)."""
        self._add("line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "stroke": stroke, "stroke_width": width, "stroke_dasharray": dash})

    def path(self, d: str, stroke: str, width: float = 1.0) -> None:
        """An unfilled path given as SVG path data (a histogram's steps)."""
        self._add("path", {"d": d, "fill": "none", "stroke": stroke, "stroke_width": width, "stroke_linejoin": "miter"})

    def text(self, x: float, y: float, text: str, size: float = 12, anchor: str = "start", color: str = TEXT, bold: bool = False,
             rotate: bool = False, halo: bool = False) -> None:
        """Text with its baseline at y; `anchor` is start, middle or end; `rotate` turns it to read upwards (an axis label);
        `halo` outlines it in white so it stays legible over lines drawn under it."""
        attrs: dict[str, str | float | None] = {"x": x, "y": y, "font_size": size, "text_anchor": None if anchor == "start" else anchor,
                                                "fill": color, "font_weight": "bold" if bold else None}
        if rotate:
            attrs["transform"] = f"rotate(-90 {coordinate(x)} {coordinate(y)})"
        if halo:
            attrs.update(stroke="#ffffff", stroke_width=3.0, stroke_linejoin="round", paint_order="stroke")
        self._add("text", attrs, escape(_NOT_XML.sub("\ufffd", text)))

    def svg(self) -> str:
        """The document: a white background, then every part in the order it was added."""
        w, h = coordinate(self.width), coordinate(self.height)
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                'font-family="sans-serif" font-size="12">')
        return "\n".join([head, f'<rect width="{w}" height="{h}" fill="#ffffff"/>', *self.parts, "</svg>"]) + "\n"


def tick_step(span: float, count: int, integer: bool = False) -> float:
    """The round step (1, 2 or 5 times a power of ten) that cuts `span` into about `count` parts, at least 1 if `integer`."""
    raw = span / max(1, count) if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    return max(1.0, round(step)) if integer else step


def ticks(low: float, high: float, step: float) -> np.ndarray:
    """The multiples of `step` from `low` to `high` (both included when they are multiples)."""
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return np.round(np.arange(first, last + 1) * step, max(0, -math.floor(math.log10(step))) + 1)


def tick_label(value: float, step: float) -> str:
    """A tick's number with as many decimals as its step needs, and thousands separators."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"
