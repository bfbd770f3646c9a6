"""Make formats/data/adgen_chat.jsonl: real ADGEN pairs laid out as ChatGLM multi-turn records.

ChatGLM-6B's ptuning reads {prompt, response, history} records, history being earlier [query, answer] turns. No public
multi-turn ADGEN exists, so consecutive ADGEN (content, summary) pairs become the turns of one conversation: 1, 2, 3
turns in rotation, so records with an empty history are covered too.

    python scripts/make_adgen_chat.py ../shared/data/adgen_dev.jsonl formats/data/adgen_chat.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(src: str, dst: str) -> None:
    pairs = [json.loads(line) for line in Path(src).read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    i, size = 0, 1
    while i + size <= len(pairs):
        turns = pairs[i : i + size]
        history = [[t["content"], t["summary"]] for t in turns[:-1]]
        out.append({"prompt": turns[-1]["content"], "response": turns[-1]["summary"], "history": history})
        i += size
        size = size % 3 + 1
    lines = [json.dumps(r, ensure_ascii=False) for r in out]
    Path(dst).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(out)} conversations from {i} ADGEN pairs -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
