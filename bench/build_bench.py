"""Benchmark: `dsc build` on a 52,000-record Alpaca-style set, beside two floors, side by side in one run.

The set is alpaca_en_demo repeated with a unique suffix on each instruction (52 times 999, cut to 52,000). Every row
runs as a fresh process, so imports and tokenizer loading count:

- tight floor (the ratios' base): what a hand-written preprocess at best costs. No transformers import; the records
  are read, the prompt template rendered with plain Jinja and prompt and response batch-encoded apart, on every core
  (one forked process per core, each with its share of the records); nothing is written.
- encode only: one process that loads the tokenizer and batch-encodes the already rendered texts (untimed render).
- dsc: `python -m dsc build <spec> -q` with the core passes (alpaca.yaml, `dedup: false`).
- dsc+dedup: the same with alpaca.yaml's dedup section as shipped.

Prints wall seconds, CPU seconds, records/s, tokens/s and peak RSS of each, and the ratios to the tight floor.

    python bench/build_bench.py [--records 52000] [--num-proc N]
    python bench/build_bench.py --memory 10     # peak RSS at 52,000 and at 520,000 records
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


TIGHT_FLOOR = """
import json, os, sys
from multiprocessing import get_context

def work(part):
    from jinja2 import Template
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(sys.argv[1])
    template = Template(open(sys.argv[2], encoding="utf-8").read())
    n = 0
    for start in range(0, len(part), 4000):
        batch = part[start:start + 4000]
        prompts = [template.render(instruction=r["instruction"], input=r.get("input", "")) for r in batch]
        responses = [r["output"] for r in batch]
        for texts in (prompts, responses):
            n += sum(len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False))
    return n

if __name__ == "__main__":
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per process: the processes share the cores
    records = json.load(open(sys.argv[3], encoding="utf-8"))
    cores = len(os.sched_getaffinity(0))
    parts = [records[i::cores] for i in range(cores)]
    with get_context("fork").Pool(cores) as pool:
        print(sum(pool.map(work, parts)))
"""


PEAK = """
import atexit, resource, runpy, sys

def peak():
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write(f"\\n__peak_kib__ {max(hwm, workers)}\\n")

atexit.register(peak)
how, target, *rest = sys.argv[1:]
sys.argv = ["-c" if how == "-c" else target, *rest]
if how == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
elif how == "-c":
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
else:
    runpy.run_path(target, run_name="__main__")
"""
"""Runs a Python program (`-m module`, `-c code` or a script path, then its arguments) and prints its peak RSS at exit:
the most of its own (VmHWM) and its largest worker's. Measured inside the child, because a child's rusage after exec
also counts the memory of the process that started it (the kernel keeps the old address space's peak across exec)."""


def run(how: str, target: str, *args: str) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and stdout of a Python child process (`PEAK` runs it)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        cmd = [sys.executable, "-c", PEAK, how, target, *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "PYTHONPATH": str(REPO)})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        errors = err.read()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{how} {target[:40]} {args[:3]} failed:\n{errors[-2000:]}")
        peak = int(errors.rsplit("__peak_kib__ ", 1)[1].split()[0])
        return wall, usage.ru_utime + usage.ru_stime, peak / 1024, out.read()


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


def memory_scaling(records: int, factor: int, num_proc: int | None) -> None:
    """Peak RSS at `records` and at `factor` times as many, side by side, for the core build (every record tokenized:
    what stays is token counts per record) and the shipped dedup (what grows is dedup's per-record columns, the split
    keys and the audit). Streaming keeps each second row close to its first."""
    rows = []
    for label, name in (("dsc", "alpaca52k-nodedup.yaml"), ("dsc+dedup", "alpaca52k.yaml")):
        for n in (records, records * factor):
            with tempfile.TemporaryDirectory() as tmp:
                spec = make_set(Path(tmp), n).with_name(name)
                args = ["build", str(spec), "-q", "-o", str(Path(tmp) / "out"), *(["--num-proc", str(num_proc)] if num_proc else [])]
                wall, cpu, rss, _ = run("-m", "dsc", *args)
                rows.append((label, n, wall, cpu, rss))
    print(f"{'':10} {'records':>10} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'x RSS':>6}")
    for i, (label, n, wall, cpu, rss) in enumerate(rows):
        print(f"{label:10} {n:10} {wall:8.1f} {cpu:8.1f} {rss:13.0f} {rss / rows[i - i % 2][4]:6.2f}")
    print("dsc: alpaca.yaml with dedup: false; dsc+dedup: alpaca.yaml as shipped; peak RSS: the most of the build process (VmHWM)")
    print("and of its largest worker")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=52_000)
    parser.add_argument("--num-proc", type=int, default=None, help="dsc's --num-proc (default: dsc's own, every core)")
    parser.add_argument("--memory", type=int, metavar="FACTOR", help="instead: peak RSS at --records and FACTOR times as many")
    args = parser.parse_args()
    if args.memory:
        memory_scaling(args.records, args.memory, args.num_proc)
        return
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

        tokenizer = str(qwen3_path() / "tokenizer.json")
        (folder / "tight_floor.py").write_text(TIGHT_FLOOR, encoding="utf-8")
        template = str(REPO / "templates/alpaca_prompt.j2")
        tight = (str(folder / "tight_floor.py"), tokenizer, template, str(folder / "alpaca_52k.json"))
        rows = []
        for label, cmd in (("tight floor", ("", *tight)), ("encode only", ("-c", FLOOR, tokenizer, str(folder / "texts.json")))):
            wall, cpu, rss, out = run(*cmd)
            rows.append((label, wall, cpu, rss, int(out.strip())))
        for label, spec_file in (("dsc", spec.with_name("alpaca52k-nodedup.yaml")), ("dsc+dedup", spec)):
            procs = ["--num-proc", str(args.num_proc)] if args.num_proc else []
            build = ["build", str(spec_file), "-q", "-o", str(folder / label), *procs]
            wall, cpu, rss, _ = run("-m", "dsc", *build)
            manifest = json.loads((folder / label / "manifest.json").read_text())
            rows.append((label, wall, cpu, rss, manifest["tokens"]["total"]["tokens"]))

    n = args.records
    floor_wall, floor_cpu = rows[0][1], rows[0][2]
    print(f"records: {n}, cores: {os.cpu_count()}, num_proc: {args.num_proc or 'every core'}")
    print(f"{'':12} {'wall s':>8} {'x floor':>8} {'CPU s':>8} {'x floor':>8} {'records/s':>10} {'tokens/s':>10} {'peak RSS MiB':>13}")
    for label, wall, cpu, rss, tokens in rows:
        print(
            f"{label:12} {wall:8.2f} {wall / floor_wall:8.2f} {cpu:8.2f} {cpu / floor_cpu:8.2f} "
            f"{n / wall:10.0f} {tokens / wall:10.0f} {rss:13.0f}"
        )
    print("dsc: the core build (alpaca.yaml with dedup: false); dsc+dedup: alpaca.yaml as shipped (exact + MinHash dedup)")


if __name__ == "__main__":
    main()
