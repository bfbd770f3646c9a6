"""`dsc preview`: colour on a terminal (trained green, masked dim), plain [masked] text in a pipe, rows wrapped to the width.

The CLI runs for real, once in a pseudo-terminal (python's pty module) and once into a pipe; --color always/never run
in-process. Every check counts the colours or brackets against the "tokens: N (M masked, K trained)" line.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import unicodedata

import pytest
from conftest import REPO, WARM_DSC, run_dsc, warm_cli_env

from dsc.cli import MASKED, TRAINED, _token_rows, main

WIDTH = 60
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COUNTS = re.compile(r"^tokens: (\d+) \((\d+) masked, (\d+) trained\)$", re.M)


def _in_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the CLI with a pseudo-terminal as stdin, stdout and stderr; return everything it wrote."""
    leader, follower = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full_env.update({"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": str(WIDTH), **warm_cli_env(), **env})
    proc = subprocess.Popen([*WARM_DSC, *args], cwd=REPO, env=full_env,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    try:
        while True:
            chunk = os.read(leader, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(leader)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def _cells(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in ANSI.sub("", line))


def _token_block(out: str) -> list[tuple[int, int, list[str]]]:
    """Per record: masked count, trained count, and the rows printed under its "tokens:" line."""
    blocks = []
    for part in out.split("\n── ")[1:]:
        found = COUNTS.search(part)
        assert found, part
        rows = part[found.end():].strip("\n").split("\n")
        blocks.append((int(found.group(2)), int(found.group(3)), rows))
    return blocks


@pytest.fixture(scope="module")
def terminal_output() -> str:
    return _in_terminal("preview", "gorilla", "-n", "2", env={})


def test_terminal_shows_trained_green_and_masked_dim(terminal_output: str) -> None:
    blocks = _token_block(terminal_output)
    assert len(blocks) == 2
    for masked, trained, rows in blocks:
        text = "\n".join(rows)
        assert text.count(TRAINED) == trained and text.count(MASKED) == masked
        assert not ANSI.sub("", rows[0]).startswith("[")  # the first (masked) token has no brackets: the colour says it
        assert len(rows) > 3 and all(_cells(row) <= WIDTH for row in rows)


def test_pipe_shows_plain_brackets_wrapped_to_the_width() -> None:
    done = run_dsc("preview", "adgen", "-n", "2", env={"COLUMNS": str(WIDTH)})
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "[masked] tokens have label -100" in done.stdout
    for masked, trained, rows in _token_block(done.stdout):
        tokens = "|".join(rows).replace("<|im_end|>", "EOS").split("|")  # Qwen3's EOS has bars of its own
        assert len(tokens) == masked + trained
        assert sum(1 for t in tokens if t.startswith("[") and t.endswith("]")) == masked
        assert len(rows) > 1 and all(_cells(row) <= WIDTH for row in rows)


def test_no_color_in_a_terminal() -> None:
    out = _in_terminal("preview", "adgen", "-n", "1", env={"NO_COLOR": "1"})
    assert "\x1b" not in out and "[masked] tokens have label -100" in out


@pytest.mark.parametrize(("flag", "colored"), [("always", True), ("never", False)])
def test_color_flag_overrides_detection(flag: str, colored: bool, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # --color always wins over NO_COLOR, as no-color.org asks
    assert main(["preview", "adgen", "-n", "1", "--color", flag]) == 0
    out = capsys.readouterr().out
    assert (TRAINED in out and MASKED in out) is colored and ("\x1b" in out) is colored


def test_rows_break_after_newlines_and_at_the_width() -> None:
    tokens = [("user", True), ("\n", True), ("héllo", False), (" world", False), ("字字字", False), ("\n", False)]
    assert _token_rows(tokens, 12, color=False) == ["[user]|[↵]", "héllo| world", "字字字|↵"]
    colored = _token_rows(tokens[:2], 12, color=True)
    assert colored == [f"{MASKED}user\x1b[0m|{MASKED}↵\x1b[0m"]
    assert _token_rows([("x" * 30, False)], 12, color=False) == ["x" * 10, "x" * 10, "x" * 10]


def test_a_closed_pipe_ends_preview_quietly() -> None:
    """`dsc preview ... | head` stops reading early: dsc exits 0 without an error message or a traceback."""
    run = subprocess.run(
        "dsc preview sharegpt -n 40 | head -1",  # far more than a pipe buffer holds
        shell=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **warm_cli_env()}, capture_output=True, text=True, timeout=120,
    )
    assert run.stdout.startswith("sharegpt: ") and run.stderr == ""
