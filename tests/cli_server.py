"""A warm `dsc` for the test suite: CLI runs fork from a process that has already imported dsc and parsed Qwen3's
tokenizer, instead of paying about a second of Python start-up, imports and parsing each (the suite makes ~95 runs).

Each run is still a process of its own, as a user's shell makes it: the caller's stdin, stdout and stderr (its file
descriptors, passed over a Unix socket, so a terminal stays a terminal and a closed pipe stays closed), its working
directory and environment, its exit code or its death by a signal; a caller that dies (a test's timeout) takes the
run with it. What a run skips is the start-up alone, so tests of the start-up itself (what `dsc --help` imports, an
installed wheel, a run killed mid-way) start Python cold. The server imports nothing that reads the environment when
it is imported (huggingface_hub, transformers, datasets, torch), so a run sees its caller's `HF_*` settings.

    python tests/cli_server.py SOCKET            the server (conftest starts one per test worker, on first use)
    python tests/cli_server.py --run ARGS...     one `dsc ARGS` through the server named by DSC_TEST_CLI_SERVER

This module imports only the standard library at the top: the client is a Python start-up and a socket, ~20 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys

SOCKET_ENV = "DSC_TEST_CLI_SERVER"
COLD = ("huggingface_hub", "transformers", "datasets", "torch")
"""Modules the server must not import: they read the environment (HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE, ...) once,
when imported, and each run has its caller's."""
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _open_fds() -> list[int]:
    """The caller's stdin, stdout and stderr to pass on; /dev/null in place of a closed one (a run gets all three)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
        fds.append(fd)
    return fds


def client(argv: list[str]) -> None:
    """Run `dsc ARGV` in a process forked by the server; exit as it exited (with its code, or by its signal)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ[SOCKET_ENV])
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(payload))], _open_fds())
    sock.sendall(payload)
    reply = sock.makefile("rb")
    pid = int(reply.readline())
    for number in FORWARDED:  # Ctrl-C or a kill meant for `dsc` reaches the run
        signal.signal(number, lambda received, frame: os.kill(pid, received))
    code = os.waitstatus_to_exitcode(int(reply.readline()))
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        data += chunk
    return bytes(data)


def _streams(unbuffered: bool) -> None:
    """sys.stdin/stdout/stderr over fds 0-2 as Python's start-up makes them: line-buffered on a terminal (stderr
    always), unbuffered under PYTHONUNBUFFERED, stderr's errors backslash-escaped."""
    import io

    encoding, errors = sys.stdout.encoding, sys.stdout.errors

    def text(fd: int, mode: str) -> io.TextIOWrapper:
        raw = unbuffered and mode == "w"
        binary = open(fd, mode + "b", buffering=0 if raw else -1, closefd=False)  # noqa: SIM115 - lives as the process
        return io.TextIOWrapper(binary, encoding=encoding, errors="backslashreplace" if fd == 2 else errors,
                                line_buffering=fd == 2 or os.isatty(fd), write_through=raw)

    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = (text(0, "r"), text(1, "w"), text(2, "w"))


def _run(request: dict, fds: list[int]) -> None:
    """In the forked run: become the caller's process (fds, directory, environment, argv), run the CLI, exit."""
    import atexit
    import traceback

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _streams(bool(os.environ.get("PYTHONUNBUFFERED")))
    sys.argv = ["dsc", *request["argv"]]
    code: object = 1
    try:
        from dsc.cli import main

        code = main()
    except SystemExit as exit:
        code = exit.code
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to a real `dsc`: a traceback, exit 1
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


def _supervise(conn: socket.socket) -> None:
    """In a child of the server: fork the run, tell the client its pid, wait for it, send its wait status. A client
    that goes away (its test timed out) kills the run."""
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    request = json.loads(_recv_exactly(conn, struct.unpack("!I", header)[0]))
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    ended = os.pidfd_open(pid)
    watch = selectors.DefaultSelector()
    watch.register(ended, selectors.EVENT_READ)
    watch.register(conn, selectors.EVENT_READ)
    while not any(key.fileobj == ended for key, _ in watch.select()):
        if not conn.recv(1):
            os.kill(pid, signal.SIGKILL)
            watch.unregister(conn)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):  # the client went away
        conn.sendall(f"{status}\n".encode())


WARM = ("dsc.cli", "dsc.api", "dsc.compiler.audit", "dsc.builders.audit", "dsc.builders.diff", "dsc.builders.html",
        "dsc.compiler.dedup.passes", "dsc.compiler.encode", "dsc.compiler.generate.run", "dsc.compiler.generate.spec",
        "dsc.compiler.yaml_lines")
"""What the commands import (their own imports are lazy, to keep `dsc --help` fast)."""


def _warm() -> None:
    """Import what the commands use and parse Qwen3's tokenizer (content-keyed: a run sees a changed file as new)."""
    import importlib

    import pyarrow as pa

    pa.array([0])  # pyarrow imports pandas on its first array
    for name in WARM:
        importlib.import_module(name)
    from dsc.compiler.tokenizer import _parsed, qwen3_path

    _parsed(qwen3_path() / "tokenizer.json")
    imported = [name for name in COLD if name in sys.modules]
    if imported:
        raise SystemExit(f"cli_server: the warm-up imported {imported}, which read the environment once")


def serve(path: str) -> None:
    """Accept runs on the Unix socket `path` until stdin closes (the test worker that started the server ended)."""
    import gc

    _warm()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    gc.freeze()  # the warm objects stay shared with the runs instead of being copied when a collection touches them
    print("ready", flush=True)
    events = selectors.DefaultSelector()
    events.register(listener, selectors.EVENT_READ)
    events.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in events.select(timeout=0.2):  # at least 5 times a second, finished supervisors are reaped below
            if key.fileobj is sys.stdin:
                return
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                try:
                    _supervise(conn)
                finally:
                    os._exit(0)
            conn.close()
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        client(sys.argv[2:])
    else:
        serve(sys.argv[1])
