"""A loopback OpenAI-compatible server: `/v1/completions` and `/v1/chat/completions` on 127.0.0.1, in a thread.

Each call goes to a `respond(call) -> Reply` function the test chooses: `scripted(...)` answers from a list in
order, `Composer` writes Alpaca-style task lists the tests never scripted. Hostile ones: `Alike` answers every
request with the same few tasks, `slow_for` delays chosen prompts, `ContextLimit` refuses a max_tokens above a
model's room with a context-length error, `hang` accepts the request and never answers. Error replies use OpenAI's
error body ({"error": {"message", "type", "code"}}). Every call is logged (path, body, headers) for the tests to
inspect, and the server counts the requests it holds at once (`peak`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def prompt(self) -> str:
        """The prompt, from either endpoint's request shape."""
        if "messages" in self.body:
            return self.body["messages"][-1]["content"]
        return self.body["prompt"]


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    """Never answer (the connection stays open until the server closes)."""


def ok(call: Call, text: str, finish_reason: str = "stop") -> Reply:
    """A completion in the shape of the endpoint that was called."""
    if call.path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    body = {"id": "cmpl-loopback", "object": kind, "created": int(time.time()), "model": call.body.get("model"), "choices": [choice]}
    return Reply(body=body)


def error(status: int, message: str, code: str | None = None, kind: str = "invalid_request_error", **headers: str) -> Reply:
    """OpenAI's error body."""
    return Reply(status=status, body={"error": {"message": message, "type": kind, "param": None, "code": code}}, headers=headers)


def context_error(call: Call) -> Reply:
    """What OpenAI answers when the prompt plus max_tokens is over the model's context."""
    asked = call.body.get("max_tokens")
    message = f"This model's maximum context length is 4097 tokens, however you requested {asked + 1000} tokens. Please reduce your prompt."
    return error(400, message, code="context_length_exceeded")


def scripted(*replies: Callable[[Call], Reply] | Reply) -> Callable[[Call], Reply]:
    """Answer the n-th call with the n-th reply (a Reply, or a function of the call); a 500 once they run out."""
    queue = list(replies)
    lock = threading.Lock()

    def respond(call: Call) -> Reply:
        with lock:
            reply = queue.pop(0) if queue else error(500, "script exhausted", kind="server_error")
        return reply(call) if callable(reply) else reply

    return respond


def task_block(number: int, instruction: str, given: str, output: str) -> str:
    """One numbered task as the model writes it after "N. Instruction:" (the header itself is the caller's)."""
    return f" {instruction}\n{number}. Input:\n{given or '<noinput>'}\n{number}. Output:\n{output}\n"


class Composer:
    """Writes a random but well-formed continuation of the prompt's list from a pool of real tasks, the same for the
    same prompt (its randomness is seeded by the prompt), with what models get wrong now and then: a block without
    its Output header, a blacklisted word, a list cut off by max_tokens (finish_reason "length")."""

    def __init__(self, pool: Sequence[dict[str, str]], delay: float = 0.0) -> None:
        self.pool = list(pool)
        self.delay = delay

    def text(self, prompt: str) -> tuple[str, str]:
        rng = random.Random(hashlib.sha256(prompt.encode()).digest())
        first = int(re.search(r"(\d+)\. Instruction:$", prompt).group(1))
        count = rng.randint(3, 20 - first)
        parts = []
        for number in range(first, first + count):
            task = rng.choice(self.pool)
            instruction, given, output = task["instruction"], task["input"], task["output"]
            roll = rng.random()
            if roll < 0.05:
                instruction = f"Draw a picture that shows this: {instruction}"
            if roll > 0.95:
                parts.append(f"{' ' if number == first else f'{number}. Instruction: '}{instruction}\n{number}. Input:\n{given}\n")
                continue
            block = task_block(number, instruction, given, output)
            parts.append(block if number == first else f"{number}. Instruction:{block}")
        text = "###\n".join(parts)
        if rng.random() < 0.2:
            return text[: int(len(text) * rng.uniform(0.6, 0.95))], "length"
        return text, "stop"

    def __call__(self, call: Call) -> Reply:
        text, finish = self.text(call.prompt)
        reply = ok(call, text, finish)
        reply.delay = self.delay
        return reply


class Alike:
    """A model stuck on one answer: the same `count` tasks from the pool for every prompt, so after the first answer
    every candidate is a copy of something kept."""

    def __init__(self, pool: Sequence[dict[str, str]], count: int = 6) -> None:
        self.tasks = list(pool[:count])

    def __call__(self, call: Call) -> Reply:
        first = int(re.search(r"(\d+)\. Instruction:$", call.prompt).group(1))
        blocks = [task_block(first + i, t["instruction"], t["input"], t["output"]) for i, t in enumerate(self.tasks)]
        return ok(call, blocks[0] + "".join(f"###\n{first + i}. Instruction:{b}" for i, b in enumerate(blocks[1:], start=1)))


def slow_for(respond: Callable[[Call], Reply], prompts: set[str], delay: float) -> Callable[[Call], Reply]:
    """`respond`, but the answers to `prompts` take `delay` seconds."""

    def slow(call: Call) -> Reply:
        reply = respond(call)
        if call.prompt in prompts:
            reply.delay = delay
        return reply

    return slow


class ContextLimit:
    """A model whose context leaves room for at most `room` new tokens: a larger max_tokens gets OpenAI's
    context-length error, as a model with a small context answers Alpaca's 3072."""

    def __init__(self, respond: Callable[[Call], Reply], room: int) -> None:
        self.respond = respond
        self.room = room

    def __call__(self, call: Call) -> Reply:
        return context_error(call) if call.body.get("max_tokens", 0) > self.room else self.respond(call)


def hang(call: Call) -> Reply:
    """Accept the request and never answer."""
    return Reply(hang=True)


class OpenAIServer:
    """The server; use as a context manager. `url` is the base_url a spec points at."""

    def __init__(self, respond: Callable[[Call], Reply], port: int = 0) -> None:
        self.respond = respond
        self.calls: list[Call] = []
        self.active = self.peak = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                call = Call(path=self.path, body=body, headers=dict(self.headers))
                with server._lock:
                    server.calls.append(call)
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    if self.path not in ("/v1/completions", "/v1/chat/completions"):
                        reply = error(404, f"Unknown request URL: POST {self.path}", code="unknown_url")
                    else:
                        reply = server.respond(call)
                    if reply.hang:
                        server._closing.wait()
                        self.close_connection = True
                        return
                    if reply.delay:
                        server._closing.wait(reply.delay)
                finally:
                    with server._lock:
                        server.active -= 1
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    """Serve the Composer (or a hostile mode) on a port, for trying `dsc generate` without a model (README: Generate
    instruction data)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description="a loopback OpenAI-compatible server that writes Alpaca-style task lists")
    parser.add_argument("--port", type=int, default=8765)
    modes_help = "alike: the same tasks every time; slow: 5 s per answer; context: room for 1000 new tokens; hang: never answer"
    parser.add_argument("--mode", choices=["compose", "alike", "slow", "context", "hang"], default="compose", help=modes_help)
    args = parser.parse_args()
    pool = json.loads((Path(__file__).resolve().parent.parent / "formats" / "data" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    modes: dict[str, Callable[[Call], Reply]] = {
        "compose": Composer(pool),
        "alike": Alike(pool),
        "slow": Composer(pool, delay=5.0),
        "context": ContextLimit(Composer(pool), room=1000),
        "hang": hang,
    }
    server = OpenAIServer(modes[args.mode], port=args.port)
    print(f"serving on {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
