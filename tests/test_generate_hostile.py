"""`dsc generate` (the real CLI, in a subprocess) against hostile OpenAI-compatible servers on 127.0.0.1: answers all
alike, a server that never answers, a small context, one slow answer, no server at all, and outputs that cannot be
written. Each run finishes or stops with a clear message in seconds, and a stopped run resumes losing and doubling
nothing."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATA, run_dsc
from dsc.compiler.generate.journal import journal_path
from dsc.compiler.generate.run import prompt_for
from dsc.compiler.generate.spec import DEFAULT_STALL_REQUESTS, load_generate_spec
from openai_server import Alike, Composer, ContextLimit, OpenAIServer, hang, slow_for
from test_generate_run import records, write_spec

POOL = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))


def timed(*args: str) -> tuple[object, float]:
    start = time.monotonic()
    result = run_dsc(*args)
    return result, time.monotonic() - start


def assert_whole(output: Path) -> list[dict]:
    """The output's records: each (request, candidate) once, each instruction once."""
    out = records(output)
    assert len({(r["request"], r["candidate"]) for r in out}) == len(out)
    assert len({r["instruction"].lower() for r in out}) == len(out)
    return out


def test_answers_all_alike_stop_the_run_with_the_counts_and_resume_doubles_nothing(tmp_path: Path):
    with OpenAIServer(Alike(POOL)) as server:
        spec = write_spec(tmp_path, server.url, num_instructions=300)
        stopped, seconds = timed("generate", str(spec), "-q")
        kept = assert_whole(tmp_path / "gen.jsonl")
        first_calls = len(server.calls)
        again, _ = timed("generate", str(spec), "-q")
    assert stopped.returncode == 1 and seconds < 30
    message = stopped.stderr
    assert f"no new record in the last {DEFAULT_STALL_REQUESTS} requests: too similar " in message
    assert f"{len(kept)} of 300 records are in {tmp_path / 'gen.jsonl'}; run the same command to resume" in message
    assert "generate.stall.requests sets the limit" in message and "Traceback" not in message
    # request 0 keeps what it can, requests 1..25 keep nothing: six batches of 5
    assert 0 < len(kept) <= 6 and first_calls == DEFAULT_STALL_REQUESTS + 5
    # the rerun asks anew, keeps nothing twice, and stops after as many requests
    assert again.returncode == 1 and records(tmp_path / "gen.jsonl") == kept
    assert len(server.calls) - first_calls == DEFAULT_STALL_REQUESTS


def test_a_server_that_never_answers_stops_the_run_after_stall_seconds_and_a_resume_completes(tmp_path: Path):
    with OpenAIServer(hang) as server:
        spec = write_spec(tmp_path, server.url, num_instructions=20, stall={"seconds": 1.5})
        stopped, seconds = timed("generate", str(spec), "-q")
    assert stopped.returncode == 1 and seconds < 15
    assert "no new record in 1.5 s (0 answers came back; 5 requests still unanswered from http://127.0.0.1:" in stopped.stderr
    assert "0 of 20 records are in" in stopped.stderr and "run the same command to resume" in stopped.stderr
    with OpenAIServer(Composer(POOL)) as server:
        spec = write_spec(tmp_path, server.url, num_instructions=20, stall={"seconds": 3})
        resumed = run_dsc("generate", str(spec), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert len(assert_whole(tmp_path / "gen.jsonl")) == 20


def test_a_context_length_cut_is_remembered_by_later_requests_and_runs(tmp_path: Path):
    with OpenAIServer(ContextLimit(Composer(POOL), room=2000)) as server:
        spec = write_spec(tmp_path, server.url, num_instructions=60)
        first = run_dsc("generate", str(spec), "-q")
        asked = Counter(c.body["max_tokens"] for c in server.calls)
        answered = sum('"text"' in line for line in journal_path(tmp_path / "gen.jsonl").read_text(encoding="utf-8").splitlines())
        before = len(server.calls)
        spec = write_spec(tmp_path, server.url, num_instructions=120)
        second = run_dsc("generate", str(spec), "-q")
        later = {c.body["max_tokens"] for c in server.calls[before:]}
    assert first.returncode == 0 == second.returncode, first.stderr + second.stderr
    # int(3072 * 0.8) = 2457, int(2457 * 0.8) = 1965: only the first batch, sent at once, finds the limit
    assert asked[3072] <= 5 and asked[2457] <= 5 and set(asked) == {3072, 2457, 1965} and answered > 5
    assert asked[1965] == answered and f"{answered + asked[3072] + asked[2457]} HTTP calls" in first.stdout
    assert later == {1965}  # the next run starts from the journal's cut


def test_requests_out_stay_within_concurrency_while_one_answer_is_slow(tmp_path: Path):
    spec_path = write_spec(tmp_path, "http://127.0.0.1:9/v1", num_instructions=80, concurrency=10)
    slow = {prompt_for(load_generate_spec(spec_path), 0)}
    with OpenAIServer(slow_for(Composer(POOL), slow, 1.5)) as server:
        spec_path = write_spec(tmp_path, server.url, num_instructions=80, concurrency=10)
        result = run_dsc("generate", str(spec_path), "-q")
    assert result.returncode == 0, result.stderr
    processed = journal_path(tmp_path / "gen.jsonl").read_text(encoding="utf-8").count('"done"')
    assert server.peak <= 10
    assert len(server.calls) <= processed + 10  # never more than `concurrency` sent beyond what was processed
    assert len(assert_whole(tmp_path / "gen.jsonl")) == 80


@pytest.mark.parametrize("url", ["closed port", "http://no-such-host.invalid/v1"])
def test_an_unreachable_endpoint_is_reported_within_seconds(tmp_path: Path, url: str):
    if url == "closed port":
        with OpenAIServer(hang) as server:
            url = server.url
    result, seconds = timed("generate", str(write_spec(tmp_path, url)), "-q")
    assert result.returncode == 1 and seconds < 10
    assert f"{url}/completions: cannot connect: " in result.stderr and "is the server running, and is base_url right?" in result.stderr
    assert "Traceback" not in result.stderr
    # nothing was asked, so the fixed command may change any setting (here the model) on the same output
    with OpenAIServer(Composer(POOL)) as server:
        fixed = run_dsc("generate", str(write_spec(tmp_path, server.url, model="other", num_instructions=5)), "-q")
    assert fixed.returncode == 0, fixed.stderr
    assert len(assert_whole(tmp_path / "gen.jsonl")) == 5


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in (root writes through file modes, but not into sysfs)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return Path("/sys")


def test_impossible_outputs_are_one_located_line_exit_2(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("a file\n", encoding="utf-8")
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1")
    cases = {
        tmp_path / "notes.txt" / "out" / "gen.jsonl": f"cannot be written: {tmp_path / 'notes.txt'} is a file, not a folder",
        tmp_path: "is a folder; give the output as a file path",
        read_only_folder(tmp_path) / "gen.jsonl": "cannot be written: ",
    }
    for output, message in cases.items():
        result = run_dsc("generate", str(spec), "-q", "-o", str(output))
        assert result.returncode == 2, result.stderr
        head, line = result.stderr.splitlines()
        assert head == "dsc generate: spec error:" and line.startswith(f"  {output}: {message}")
    assert not (tmp_path / "notes.txt").is_dir() and not list(read_only_folder(tmp_path).glob("gen.jsonl*"))
