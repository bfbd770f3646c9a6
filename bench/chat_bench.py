"""Benchmark: `dsc build` of a conversation format (`sharegpt`, Qwen3's chat template) beside encoding
`apply_chat_template`'s text with the fast tokenizer's batch call.

The set is glaive_toolcall_zh_demo (function calls, tools) repeated with a unique suffix on each first user message.
Every row runs as a fresh process, so imports and tokenizer loading count:

- floor: loads the tokenizer and batch-encodes (`encode_batch_fast`, every core) the texts `apply_chat_template`
  rendered beforehand (untimed).
- hf: renders each conversation with transformers' `apply_chat_template(tokenize=False)` and batch-encodes the texts:
  what a training script does without dsc (and without labels).
- dsc: `python -m dsc build <spec> -q`: validation, rendering, per-turn spans, one encode with offsets, labels, package.

    python bench/chat_bench.py [--records 20000] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from build_bench import run  # noqa: E402 - the same child-process measurement as the prompt/response benchmark

FLOOR = """
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = json.load(open(sys.argv[2], encoding="utf-8"))
print(sum(len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False)))
"""

HF = """
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
chats = json.load(open(sys.argv[2], encoding="utf-8"))
texts = [tok.apply_chat_template(c["messages"], tools=c["tools"], tokenize=False) for c in chats]
print(sum(len(e.ids) for e in tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)))
"""


def make_set(folder: Path, records: int) -> tuple[Path, list[dict]]:
    """The repeated data set, its spec, and each record's OpenAI messages and tools (for the reference rows)."""
    base = json.loads((REPO / "formats/data/glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))
    out = []
    for i in range(records):
        r = json.loads(json.dumps(base[i % len(base)]))
        r["conversations"][0]["value"] += f" ({i // len(base)})"
        out.append(r)
    (folder / "chat.json").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    spec = yaml.safe_load((REPO / "formats/sharegpt.yaml").read_text(encoding="utf-8"))
    spec["sources"] = [{"path": str(folder / "chat.json")}]
    (folder / "chat.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    from dsc.compiler.chat.layouts import to_conversation
    from dsc.compiler.spec import load_spec

    chat = load_spec(folder / "chat.yaml").chat
    chats = [to_conversation(r, chat, "<|im_end|>") for r in out]
    return folder / "chat.yaml", [{"messages": c.messages, "tools": c.tools} for c in chats]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()
    from dsc.compiler.tokenizer import qwen3_path
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec, chats = make_set(folder, args.records)
        tok = AutoTokenizer.from_pretrained(str(qwen3_path()))
        texts = [tok.apply_chat_template(c["messages"], tools=c["tools"], tokenize=False) for c in chats]
        (folder / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        (folder / "chats.json").write_text(json.dumps(chats, ensure_ascii=False), encoding="utf-8")
        rows = []
        references = (("floor", FLOOR, qwen3_path() / "tokenizer.json", "texts.json"), ("hf", HF, qwen3_path(), "chats.json"))
        for label, code, arg, data in references:
            wall, cpu, rss, out = run("-c", code, str(arg), str(folder / data))
            rows.append((label, wall, cpu, rss, int(out.strip())))
        cmd = ["build", str(spec), "-q", "-o", str(folder / "out")]
        if args.num_proc > 1:
            cmd += ["--num-proc", str(args.num_proc)]
        wall, cpu, rss, _ = run("-m", "dsc", *cmd)
        manifest = json.loads((folder / "out" / "manifest.json").read_text())
        rows.append(("dsc", wall, cpu, rss, manifest["tokens"]["total"]["tokens"]))

    n = args.records
    floor_wall, floor_cpu = rows[0][1], rows[0][2]
    print(f"conversations: {n}, cores: {os.cpu_count()}, num_proc: {args.num_proc}")
    print(f"{'':6} {'wall s':>8} {'x floor':>8} {'CPU s':>8} {'x floor':>8} {'records/s':>10} {'tokens/s':>10} {'peak RSS MiB':>13}")
    for label, wall, cpu, rss, tokens in rows:
        print(
            f"{label:6} {wall:8.2f} {wall / floor_wall:8.2f} {cpu:8.2f} {cpu / floor_cpu:8.2f} "
            f"{n / wall:10.0f} {tokens / wall:10.0f} {rss:13.0f}"
        )
    print(f"dsc / hf wall: {rows[2][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
