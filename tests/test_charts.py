"""The report's SVG writer: well-formed, self-contained, byte-deterministic charts whose axes and marks say what the numbers are."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import REPO
from dsc.builders import charts
from dsc.builders.charts import COLORS, SPLIT_COLORS, Bar, Panel, Series
from dsc.builders.svg import tick_label, tick_step, ticks

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def _lengths_panels(limit: int = 512) -> list[Panel]:
    rng = np.random.default_rng(7)
    train, validation = rng.integers(20, 600, 5000), rng.integers(20, 600, 300)
    series = [Series("train", train, SPLIT_COLORS[0]), Series("validation", validation, SPLIT_COLORS[1])]
    return [Panel("total tokens", series, {"max_length": limit}), Panel("prompt tokens", series, {})]


def _x_ticks(root: ET.Element) -> list[tuple[float, float]]:
    """(value, x) of the x-axis tick labels (centred on their tick), left to right."""
    found = [(float(t.text.replace(",", "")), float(t.get("x"))) for t in root.iter(f"{NS}text")
             if t.get("font-size") == "11" and t.get("text-anchor") == "middle"]
    return sorted(found, key=lambda tick: tick[1])


def _evenly_round(values: list[float]) -> bool:
    """Starts at 0 and goes up in one round step."""
    steps = np.diff(values)
    return len(values) >= 3 and values[0] == 0 and bool(np.allclose(steps, steps[0])) and _round(float(steps[0]))


def _round(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(math.isclose(mantissa, m) for m in (1, 2, 5))


def test_every_chart_kind_is_well_formed_self_contained_svg() -> None:
    hostile = "a <b> & \"c\" \x01 'd'"
    drawn = [
        charts.bars([Bar("read", 1070, COLORS["read"]), Bar(f"dropped: {hostile}", 3, COLORS["dropped"])], f"funnel {hostile}"),
        charts.histograms([Panel(hostile, [Series(hostile, np.array([1, 2, 3]), SPLIT_COLORS[0])], {hostile: 2})]),
        charts.histograms([Panel("share", [Series("train", np.array([0.1, 0.5]), SPLIT_COLORS[0])], {})], cols=1, fraction=True, bins=20),
        charts.counts(np.array([2, 2, 3]), hostile, hostile),
        charts.bars([], "empty"),
        charts.counts(np.zeros(0, np.int64), "empty", "size"),
        charts.histograms([Panel("empty", [Series("train", np.zeros(0, np.int64), SPLIT_COLORS[0])], {})]),
    ]
    for svg in drawn:
        root = _parse(svg)
        assert root.get("font-family") == "sans-serif" and float(root.get("width")) > 0 and float(root.get("height")) > 0
        assert "href" not in svg and "url(" not in svg and "<script" not in svg and " id=" not in svg and "font-face" not in svg
        assert "nan" not in svg.lower().replace("\ufffd", "")
    texts = ["".join(t.itertext()) for t in _parse(drawn[0]).iter(f"{NS}text")]
    assert "dropped: a <b> & \"c\" \ufffd 'd'" in texts  # escaped in the file, read back as written


def test_equal_input_gives_equal_bytes() -> None:
    first = charts.histograms(_lengths_panels(), cols=2)
    assert charts.histograms(_lengths_panels(), cols=2) == first
    assert charts.histograms(_lengths_panels(limit=256), cols=2) != first
    assert charts.counts(np.array([3, 2, 2]), "t", "x") == charts.counts(np.array([2, 3, 2]), "t", "x")


@pytest.mark.parametrize("span", [1, 3, 7, 10, 66, 1000, 1150, 4097, 123_456, 0.5, 1.0, 0.03])
def test_tick_steps_are_one_two_or_five_times_a_power_of_ten(span: float) -> None:
    for count in (2, 4, 7):
        step = tick_step(span, count)
        assert _round(step) and span / step <= count * (1 + 1e-9)
        values = ticks(0, span, step)
        assert values[0] == 0 and values[-1] <= span * (1 + 1e-9) and values[-1] + step > span
        assert all(tick_label(v, step) == tick_label(v, step).rstrip() for v in values)
    assert tick_step(3, 7, integer=True) == 1
    assert [tick_label(v, 0.2) for v in ticks(0, 1, 0.2)] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert tick_label(25000, 5000) == "25,000"


def test_histogram_axes_have_round_ticks_and_the_limit_line_sits_at_the_limit() -> None:
    root = _parse(charts.histograms(_lengths_panels(limit=512), cols=2))
    labels = [t for t in root.iter(f"{NS}text") if t.get("font-size") == "11"]
    x_values = sorted({float(t.text.replace(",", "")) for t in labels if t.get("text-anchor") == "middle"})
    y_values = sorted({float(t.text.replace(",", "")) for t in labels if t.get("text-anchor") == "end"})
    assert _evenly_round(x_values) and _evenly_round(y_values) and y_values[-1] >= 5000 / 40
    # the first panel's x axis: tick positions are linear in the value, and the dashed limit line is where 512 falls
    first_panel = _x_ticks(root)[: len(x_values)]
    assert [v for v, _ in first_panel] == x_values
    (v0, x0), (v1, x1) = first_panel[0], first_panel[-1]
    assert all(x == pytest.approx(x0 + (v - v0) * (x1 - x0) / (v1 - v0), abs=0.15) for v, x in first_panel)
    dashed = [line for line in root.iter(f"{NS}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1 and dashed[0].get("x1") == dashed[0].get("x2") and dashed[0].get("stroke") == charts.LIMIT
    assert float(dashed[0].get("x1")) == pytest.approx(x0 + (512 - v0) * (x1 - x0) / (v1 - v0), abs=0.15)
    texts = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert "max_length 512" in texts and "train (5,000)" in texts and "validation (300)" in texts and "records" in texts


def test_bars_are_as_long_as_their_counts() -> None:
    items = [Bar("read", 1000, COLORS["read"]), Bar("duplicate: exact", 250, COLORS["duplicate"]), Bar("kept: train", 750, COLORS["kept"])]
    root = _parse(charts.bars(items, "Records from read to kept"))
    bars = [r for r in root.iter(f"{NS}rect") if r.get("fill") != "#ffffff"]
    assert [r.get("fill") for r in bars] == [b.color for b in items]
    widths = [float(r.get("width")) for r in bars]
    assert widths[1] / widths[0] == pytest.approx(0.25, abs=1e-3) and widths[2] / widths[0] == pytest.approx(0.75, abs=1e-3)
    texts = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert {"read", "duplicate: exact", "kept: train", "1,000", "250", "750", "records"} <= set(texts)
    shown = [v for v, _ in _x_ticks(root)]
    assert _evenly_round(shown) and shown[-1] >= 1000


def test_counts_draws_a_bar_per_value_with_its_number_of_records() -> None:
    root = _parse(charts.counts(np.array([2] * 30 + [3] * 10 + [7] * 5), "duplicate clusters by size", "records in the cluster"))
    bars = [r for r in root.iter(f"{NS}rect") if r.get("fill") != "#ffffff"]
    heights = [float(r.get("height")) for r in bars]
    assert len(bars) == 3 and heights[1] / heights[0] == pytest.approx(10 / 30, abs=1e-3) and heights[2] / heights[0] == pytest.approx(
        5 / 30, abs=1e-3)
    texts = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert {"2", "3", "7", "30", "10", "5", "records", "records in the cluster"} <= set(texts)


def test_drawing_imports_no_plotting_library() -> None:
    """The charts are why every build drew its report slowly: drawing them must not import a plotting library."""
    code = ("import sys, numpy as np; from dsc.builders import charts; charts.counts(np.array([1, 2]), 't', 'x'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'pylab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout
