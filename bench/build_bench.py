"""Benchmark: `dsc build` on a 52,000-record Alpaca-style set, beside the floor of just encoding the texts.

The set is alpaca_en_demo repeated with a unique suffix on each instruction (52 times 999, cut to 52,000). Both sides
run as fresh processes, so imports and tokenizer loading count:

- dsc:   `python -m dsc build <spec> -q`
- floor: a process that only loads the tokenizer and batch-encodes the already rendered prompt and response texts.

Prints wall seconds, records/s, tokens/s and peak RSS of each, and the ratio.

    python bench/build_bench.py [--records 52000] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FLOOR = """
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = json.load(open(sys.argv[2], encoding="utf-8"))
n = 0
for start in range(0, len(texts), 4000):
    n += sum(len(e.ids) for e in tok.encode_batch_fast(texts[start:start + 4000], add_special_tokens=False))
print(n)
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{cmd[:4]} failed:\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited children; runs go from lightest to heaviest below.
    return wall, max(peak, before) / 1024, proc.stdout


def make_set(folder: Path, records: int) -> Path:
    base = json.loads((REPO / "formats/data/alpaca_en_demo.json").read_text(encoding="utf-8"))
    out = []
    i = 0
    while len(out) < records:
        r = base[i % len(base)]
        out.append({**r, "instruction": f"{r['instruction']} (variant {i // len(base)})"})
        i += 1
    path = folder / "alpaca_52k.json"
    path.write_text(json.dumps(out), encoding="utf-8")
    spec = (REPO / "formats/alpaca.yaml").read_text(encoding="utf-8").replace("data/alpaca_en_demo.json", str(path))
    spec = spec.replace("prompt: {file: alpaca_prompt.j2}", f"prompt: {{file: {REPO / 'templates/alpaca_prompt.j2'}}}")
    (folder / "alpaca52k.yaml").write_text(spec, encoding="utf-8")
    return folder / "alpaca52k.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=52_000)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()
    from compiler.tokenizer import qwen3_path

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = make_set(folder, args.records)
        # Render the texts once (untimed) for the floor process.
        import datasets

        datasets.disable_progress_bars()
        from compiler.pipeline import Options, render
        from compiler.spec import load_spec

        rendered = render(load_spec(spec), Options()).dataset
        texts = rendered.data.table.column("prompt").to_pylist() + rendered.data.table.column("response").to_pylist()
        (folder / "texts.json").write_text(json.dumps(texts), encoding="utf-8")

        floor_cmd = [sys.executable, "-c", FLOOR, str(qwen3_path() / "tokenizer.json"), str(folder / "texts.json")]
        floor_wall, floor_rss, floor_out = run(floor_cmd)
        cmd = [sys.executable, "-m", "dsc", "build", str(spec), "-q", "-o", str(folder / "pkg")]
        if args.num_proc > 1:
            cmd += ["--num-proc", str(args.num_proc)]
        dsc_wall, dsc_rss, _ = run(cmd)
        manifest = json.loads((folder / "pkg/manifest.json").read_text())
        tokens = manifest["tokens"]["total"]["tokens"]
        floor_tokens = int(floor_out.strip())

    n = args.records
    print(f"records: {n}, cores: {os.cpu_count()}, num_proc: {args.num_proc}")
    print(f"{'':8} {'wall s':>8} {'records/s':>10} {'tokens/s':>10} {'peak RSS MiB':>13}")
    print(f"{'floor':8} {floor_wall:8.2f} {n / floor_wall:10.0f} {floor_tokens / floor_wall:10.0f} {floor_rss:13.0f}")
    print(f"{'dsc':8} {dsc_wall:8.2f} {n / dsc_wall:10.0f} {tokens / dsc_wall:10.0f} {dsc_rss:13.0f}")
    print(f"dsc / floor wall: {dsc_wall / floor_wall:.2f}x")


if __name__ == "__main__":
    main()
