"""Benchmark: `dsc build` on a 52,000-record Alpaca-style set, beside the floor of just encoding the texts.

The set is alpaca_en_demo repeated with a unique suffix on each instruction (52 times 999, cut to 52,000). Both sides
run as fresh processes, so imports and tokenizer loading count:

- floor: a process that only loads the tokenizer and batch-encodes the already rendered prompt and response texts.
- dsc: `python -m dsc build <spec> -q` with the core passes (alpaca.yaml, `dedup: false`).
- dsc+dedup: the same with alpaca.yaml's dedup section as shipped.

Prints wall seconds, records/s, tokens/s and peak RSS of each, and the ratio.

    python bench/build_bench.py [--records 52000] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

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


def run(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and stdout of a child process (its own rusage, from os.wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "PYTHONPATH": str(REPO)})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{cmd[:4]} failed:\n{err.read()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


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
    spec = yaml.safe_load((REPO / "formats/alpaca.yaml").read_text(encoding="utf-8"))
    spec["sources"] = [{"path": str(path)}]
    spec["templates"]["prompt"] = {"file": str(REPO / "templates/alpaca_prompt.j2")}
    (folder / "alpaca52k.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    spec["dedup"] = False
    (folder / "alpaca52k-nodedup.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return folder / "alpaca52k.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=52_000)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()
    from dsc.compiler.tokenizer import qwen3_path

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = make_set(folder, args.records)
        # Render the texts once (untimed) for the floor process.
        import datasets

        datasets.disable_progress_bars()
        from dsc.compiler.pipeline import Options, render
        from dsc.compiler.spec import load_spec

        rendered = render(load_spec(spec), Options()).spill.table()
        texts = rendered.column("prompt").to_pylist() + rendered.column("response").to_pylist()
        (folder / "texts.json").write_text(json.dumps(texts), encoding="utf-8")

        floor_cmd = [sys.executable, "-c", FLOOR, str(qwen3_path() / "tokenizer.json"), str(folder / "texts.json")]
        floor_wall, floor_cpu, floor_rss, floor_out = run(floor_cmd)
        rows = [("floor", floor_wall, floor_cpu, floor_rss, int(floor_out.strip()))]
        for label, spec_file in (("dsc", spec.with_name("alpaca52k-nodedup.yaml")), ("dsc+dedup", spec)):
            cmd = [sys.executable, "-m", "dsc", "build", str(spec_file), "-q", "-o", str(folder / label)]
            if args.num_proc > 1:
                cmd += ["--num-proc", str(args.num_proc)]
            wall, cpu, rss, _ = run(cmd)
            manifest = json.loads((folder / label / "manifest.json").read_text())
            rows.append((label, wall, cpu, rss, manifest["tokens"]["total"]["tokens"]))

    n = args.records
    print(f"records: {n}, cores: {os.cpu_count()}, num_proc: {args.num_proc}")
    print(f"{'':10} {'wall s':>8} {'x floor':>8} {'CPU s':>8} {'x floor':>8} {'records/s':>10} {'tokens/s':>10} {'peak RSS MiB':>13}")
    for label, wall, cpu, rss, tokens in rows:
        print(
            f"{label:10} {wall:8.2f} {wall / floor_wall:8.2f} {cpu:8.2f} {cpu / floor_cpu:8.2f} "
            f"{n / wall:10.0f} {tokens / wall:10.0f} {rss:13.0f}"
        )
    print("dsc: the core build (alpaca.yaml with dedup: false); dsc+dedup: alpaca.yaml as shipped (exact + MinHash dedup)")


if __name__ == "__main__":
    main()
