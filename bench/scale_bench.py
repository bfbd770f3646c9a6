"""Benchmark: a build of millions of synthetic records, to show that memory does not follow the record count.

Writes bench/build_bench.py's Alpaca-style set as a JSON-lines file of any size, builds it with formats/alpaca.yaml as
shipped (exact + MinHash dedup, Qwen3 tokenizer) as a fresh process and prints wall time, the peak RSS of the build
process or its largest worker (as build_bench.py measures it), the spill folder's largest size and the package's
size on disk, and the build's counts. The set is almost all near-copies, so what it loads is
reading, rendering, dedup's global step and the audit (a line per dropped record), not the tokenizer; with
`--no-dedup` every record is tokenized and written to the package instead.

    python bench/scale_bench.py --records 5000000 [--no-dedup] [--spill DIR] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from build_bench import run  # noqa: E402


def make_records(path: Path, records: int) -> None:
    """Write `records` records as JSON lines, a block at a time (the file never sits in memory): alpaca_en_demo
    repeated with a unique suffix on each instruction, as bench/build_bench.py's set (each record is a near-copy of
    the same record in every other round, so dedup keeps about one per base record)."""
    base = json.loads((REPO / "formats/data/alpaca_en_demo.json").read_text(encoding="utf-8"))
    block = 100_000
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, records, block):
            lines = []
            for i in range(start, min(start + block, records)):
                r = base[i % len(base)]
                lines.append(json.dumps({**r, "instruction": f"{r['instruction']} (variant {i // len(base)})"}))
            out.write("\n".join(lines) + "\n")


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--spill", type=Path, default=None, help="DSC_SPILL_DIR for the build (default: a temp folder)")
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--no-dedup", action="store_true", help="build with dedup: false (every record tokenized)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "synthetic.jsonl"
        start = time.perf_counter()
        make_records(data, args.records)
        print(f"wrote {args.records:,} records ({data.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.0f} s", flush=True)
        spec = yaml.safe_load((REPO / "formats/alpaca.yaml").read_text(encoding="utf-8"))
        spec["sources"] = [{"path": str(data)}]
        spec["templates"]["prompt"] = {"file": str(REPO / "templates/alpaca_prompt.j2")}
        if args.no_dedup:
            spec["dedup"] = False
        (folder / "scale.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        spill = args.spill or folder / "spill"
        spill.mkdir(parents=True, exist_ok=True)
        build = ["build", str(folder / "scale.yaml"), "-q", "-o", str(folder / "out")]
        build += ["--num-proc", str(args.num_proc)] if args.num_proc else []
        most = [0]
        stop = threading.Event()

        def watch() -> None:  # the spill folder's largest size during the build
            while not stop.wait(5):
                most[0] = max(most[0], folder_size(spill))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        os.environ["DSC_SPILL_DIR"] = str(spill)
        wall, cpu, rss, out = run("-m", "dsc", *build)
        stop.set()
        watcher.join()
        print(out.strip())
        print(f"wall {wall:.0f} s, CPU {cpu:.0f} s; peak RSS {rss:.0f} MiB (the build process or its largest worker)")
        print(f"spill folder at most {most[0] / 2**30:.2f} GiB; package {folder_size(folder / 'out') / 2**30:.2f} GiB")
        shutil.rmtree(folder / "out")


if __name__ == "__main__":
    main()
