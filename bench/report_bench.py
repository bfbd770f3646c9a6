"""Benchmark: the report beside the build, on build_bench.py's 52,000-record Alpaca-style set.

For the core build (alpaca.yaml with `dedup: false`, every record kept) and the shipped one (with dedup, which finds
the set's copies): `dsc build` as a process (which writes the report too), `dsc report` as a process (reads the
package and writes the report again), and the report alone in this process after its imports (read the package,
measure, draw, write), of which the charts (every call into builders/charts.py, timed around it). The report's share
is what it adds to a build.

    python bench/report_bench.py [--records 52000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import REPO, make_set, run  # noqa: E402 - the set and the process timer are build_bench's


def timed(module: Any, names: tuple[str, ...], spent: list[float]) -> None:
    """Wrap the module's functions so each call adds its wall seconds to `spent` (the callers look them up on the module)."""

    def wrap(draw: Callable[..., str]) -> Callable[..., str]:
        def call(*args: Any, **kwargs: Any) -> str:
            start = time.perf_counter()
            try:
                return draw(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)

        return call

    for name in names:
        setattr(module, name, wrap(getattr(module, name)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=52_000)
    args = parser.parse_args()
    from dsc.builders import charts
    from dsc.builders.package_view import read_view
    from dsc.builders.report import make_report

    drawing: list[float] = []
    timed(charts, ("bars", "histograms", "counts"), drawing)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = make_set(folder, args.records)
        for label, spec_file in (("dsc", spec.with_name("alpaca52k-nodedup.yaml")), ("dsc+dedup", spec)):
            package = folder / label
            build_wall, build_cpu, _, _ = run("-m", "dsc", "build", str(spec_file), "-q", "-o", str(package))
            report_wall, report_cpu, report_rss, _ = run("-m", "dsc", "report", str(package))
            drawing.clear()
            start, cpu = time.perf_counter(), time.process_time()
            view = read_view(package)
            report = make_report(view)
            inside, inside_cpu = time.perf_counter() - start, time.process_time() - cpu
            kept = sum(split.rows for split in view.splits.values())
            rows.append((label, kept, build_wall, build_cpu, report_wall, report_cpu, inside, inside_cpu, sum(drawing), report_rss,
                         len(report.html)))
    print(f"records: {args.records} ({REPO.name}); report = read the package, measure, draw {len(report.charts)} charts, write")
    print(f"{'':10} {'kept':>6} {'build s':>8} {'CPU s':>6} {'report s':>9} {'CPU s':>6} {'in-proc s':>11} {'CPU s':>6} "
          f"{'of build CPU':>13} {'charts s':>9} {'RSS MiB':>8} {'html KiB':>9}")
    for label, kept, bw, bc, rw, rc, inside, inside_cpu, drawn, rss, size in rows:
        print(f"{label:10} {kept:6d} {bw:8.2f} {bc:6.2f} {rw:9.2f} {rc:6.2f} {inside:11.2f} {inside_cpu:6.2f} {inside_cpu / bc:13.1%} "
              f"{drawn:9.2f} {rss:8.0f} {size / 1024:9.0f}")
    print("build: `dsc build` (report included); report: `dsc report` as a process (imports included); in-proc: the report "
          "after imports (read the package, measure, draw, render; a build reads its own spill files instead of the Parquet); charts: "
          "the drawing within in-proc")


if __name__ == "__main__":
    main()
