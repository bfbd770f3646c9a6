"""Whole `dsc generate` runs against a loopback OpenAI-compatible server: scripted answers, answers no test scripted,
failures, a run killed with SIGKILL and resumed, and the output built by formats/alpaca.yaml unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, FORMATS, REPO, dsc_cli
from dsc.compiler.errors import SpecError
from dsc.compiler.generate.journal import journal_path
from dsc.compiler.generate.run import GenerateStopped, generate, prompt_for
from dsc.compiler.generate.spec import load_generate_spec
from dsc.compiler.yaml_lines import load_yaml_with_lines
from openai_server import Composer, OpenAIServer, error, ok, scripted, task_block
from test_generate_format import reference_parse

SEEDS = DATA / "alpaca_seed_tasks.jsonl"
POOL = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))


def write_spec(tmp_path: Path, url: str, name: str = "gen", **generate: object) -> Path:
    settings = {"seeds": str(SEEDS), "model": "tiny", "base_url": url, "backoff": 0.01, "output": str(tmp_path / f"{name}.jsonl")}
    settings.update(generate)
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "generate": settings}), encoding="utf-8")  # JSON is YAML
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def listing(first: int, tasks: list[tuple[str, str, str]]) -> str:
    """A completion continuing the prompt's list with `tasks`, numbered from `first`."""
    blocks = [task_block(first + i, *t) for i, t in enumerate(tasks)]
    return blocks[0] + "".join(f"###\n{first + i}. Instruction:{b}" for i, b in enumerate(blocks[1:], start=1))


def test_scripted_run_keeps_exactly_n_and_counts_every_drop(tmp_path: Path):
    first = [
        ("Name three primary colors used in painting.", "", "Red, yellow and blue."),
        ("Name three primary colors used in painting.", "", "Again."),  # copy of the one just kept
        ("Plot the monthly sales of a small shop.", "", "..."),  # blacklisted
        ("Too short here", "", "no"),
    ]
    second = [
        ("Translate the sentence into French for me.", "The cat sleeps.", "Le chat dort."),
        ("What is the relation between the given pairs?", "Up : Down", "Opposites."),  # a seed's instruction
        ("Summarize the paragraph in one sentence.", "Rain fell all day.", "It rained."),
        ("Explain why the sky looks blue during the day.", "", "Rayleigh scattering."),
    ]
    spec = load_generate_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", num_instructions=3, requests_per_batch=3))
    answers = {  # by prompt: the three requests of a batch arrive in any order
        prompt_for(spec, 0): (listing(4, first) + "###\n8. Instruction: cut off here", "length"),
        prompt_for(spec, 1): (listing(4, second), "stop"),
        prompt_for(spec, 2): ("no list at all", "stop"),
    }
    with OpenAIServer(lambda call: ok(call, *answers[call.prompt])) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=3, requests_per_batch=3))
        summary = generate(spec, progress=False)
    out = records(spec.output)
    assert [r["instruction"] for r in out] == [
        "Name three primary colors used in painting.",
        "Translate the sentence into French for me.",
        "Summarize the paragraph in one sentence.",
    ]
    assert out[1]["input"] == "The cat sleeps." and out[1]["output"] == "Le chat dort."
    assert [(r["request"], r["candidate"]) for r in out] == [(0, 0), (1, 0), (1, 2)]
    assert summary.dropped == {"truncated": 1, "too similar": 2, "blacklisted word": 1, "too short": 1}
    assert summary.kept == 3 and summary.sent == 3
    # request 2's answer came back and is journaled, unprocessed; request 1 stopped after its third task
    lines = records(journal_path(spec.output))
    done = [line for line in lines if "done" in line]
    assert [d["done"] for d in done] == [0, 1] and done[-1]["next"] == [1, 3]
    assert sorted(line["request"] for line in lines if "request" in line) == [0, 1, 2]
    assert out[0]["most_similar_instructions"] == [] and out[0]["instruction"] not in {s for s in spec.seed_tasks}
    # a later run that asks for more goes on from request 1's fourth task, then request 2, without asking again
    renewable = listing(4, [("Give an example of a renewable energy source.", "", "Wind.")])
    with OpenAIServer(lambda call: ok(call, renewable)) as again:
        spec = load_generate_spec(write_spec(tmp_path, again.url, num_instructions=5, requests_per_batch=3))
        summary = generate(spec, progress=False)
    out = records(spec.output)
    added = [r["instruction"] for r in out[3:]]
    assert added == ["Explain why the sky looks blue during the day.", "Give an example of a renewable energy source."]
    assert summary.reused == 2 and summary.resumed == 3 and summary.dropped["malformed"] == 1  # request 2: "no list at all"
    assert {c.prompt for c in again.calls} == {prompt_for(spec, k) for k in (3, 4, 5)}  # one new batch, nothing asked again


def test_rouge_l_run_keeps_what_alpacas_loop_keeps(tmp_path: Path):
    composer = Composer(POOL)
    with OpenAIServer(composer) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=40, novelty={"similarity": "rouge-l"}))
        generate(spec, progress=False)
        prompts = [prompt_for(spec, k) for k in range(len(server.calls))]
    # Alpaca's post-processing and ROUGE-L loop over the same answers, in request order
    from test_generate_novelty import alpaca_loop

    candidates = [t for p in prompts for t in reference_parse(3, *composer.text(p))]
    verdicts = alpaca_loop([t.instruction for t in spec.seed_tasks], [c["instruction"] for c in candidates])
    expected = [(c, top, avg) for c, (keep, top, avg) in zip(candidates, verdicts, strict=True) if keep][:40]
    out = records(spec.output)
    assert [{k: r[k] for k in ("instruction", "input", "output")} for r in out] == [c for c, _, _ in expected]
    for record, (_, top, average) in zip(out, expected, strict=True):
        assert {s["instruction"]: s["score"] for s in record["most_similar_instructions"]} == top
        assert record["avg_similarity_score"] == pytest.approx(average, rel=1e-12)


def test_unscripted_chat_run_meets_every_rule_and_builds_with_alpaca_yaml(tmp_path: Path):
    with OpenAIServer(Composer(POOL)) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=120, api="chat", concurrency=10))
        summary = generate(spec, progress=False)
    out = records(spec.output)
    assert len(out) == 120 == summary.kept
    assert len({r["instruction"].lower() for r in out}) == 120
    assert all(spec.filters.reject(r["instruction"]) is None for r in out)
    assert summary.dropped["blacklisted word"] > 0 and summary.dropped["too similar"] > 0 and summary.dropped["truncated"] > 0
    assert all(r["output"] and r["instruction"] for r in out)
    # formats/alpaca.yaml, unchanged but for its source, builds the output
    data, _ = load_yaml_with_lines((FORMATS / "alpaca.yaml").read_text(encoding="utf-8"), "alpaca.yaml")
    data["sources"] = [{"path": str(spec.output)}]
    build_spec = tmp_path / "alpaca-generated.yaml"
    build_spec.write_text(json.dumps(data), encoding="utf-8")
    built = dsc_cli("build", str(build_spec), "-o", str(tmp_path / "pkg"), "--quiet")  # the CLI, in this process
    assert built.returncode == 0, built.stderr
    assert "120 read, 0 invalid" in built.stdout
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text(encoding="utf-8"))
    assert sum(manifest["counts"]["kept"].values()) + sum(manifest["counts"]["dropped"].values()) == 120


def test_failing_endpoint_stops_the_run_and_a_rerun_resumes(tmp_path: Path):
    with OpenAIServer(scripted(*[error(503, "down", kind="server_error")] * 40)) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=5, requests_per_batch=2, retries=1))
        with pytest.raises(GenerateStopped, match=r"4 requests in a row failed \(the last: HTTP 503: down"):
            generate(spec, progress=False)
    with OpenAIServer(Composer(POOL)) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=5, requests_per_batch=2))
        summary = generate(spec, progress=False)
        asked = {c.prompt for c in server.calls}
    assert {c.prompt for c in server.calls[:2]} == {prompt_for(spec, 4), prompt_for(spec, 5)}
    assert not asked & {prompt_for(spec, k) for k in range(4)}  # the 4 failed requests were reported, not repeated
    assert summary.kept == 5 and len(records(spec.output)) == 5


def test_auth_error_is_a_clean_cli_error(tmp_path: Path):
    with OpenAIServer(scripted(*[error(401, "Incorrect API key provided")] * 5)) as server:
        spec = write_spec(tmp_path, server.url, api_key_env="LOOPBACK_KEY")
        missing = dsc_cli("generate", str(spec), "-q", env={"LOOPBACK_KEY": ""})
        refused = dsc_cli("generate", str(spec), "-q", env={"LOOPBACK_KEY": "sk-wrong"})
    assert missing.returncode == 2 and "the environment variable LOOPBACK_KEY is not set" in missing.stderr
    assert refused.returncode == 1 and "HTTP 401: Incorrect API key provided (the API key was refused)" in refused.stderr
    assert "Traceback" not in refused.stderr + missing.stderr


def test_resume_cuts_records_of_an_unfinished_request_and_torn_lines(tmp_path: Path):
    with OpenAIServer(Composer(POOL)) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=30))
        generate(spec, progress=False)
        complete = spec.output.read_bytes()
        calls = len(server.calls)
        # a crash after request k's records were written but before its "done" line, mid-way through both files
        journal = journal_path(spec.output)
        lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
        last_done = max(i for i, line in enumerate(lines) if '"done"' in line)
        journal.write_text("".join(lines[:last_done]) + '{"done": 9, "ne', encoding="utf-8")
        with spec.output.open("a", encoding="utf-8") as fh:
            fh.write('{"instruction": "half a rec')
        summary = generate(spec, progress=False)
        assert len(server.calls) == calls  # every answer was journaled: nothing asked again
    assert spec.output.read_bytes() == complete
    assert summary.reused >= 1 and summary.sent == 0


def test_changed_settings_or_a_foreign_output_are_refused(tmp_path: Path):
    with OpenAIServer(Composer(POOL)) as server:
        generate(load_generate_spec(write_spec(tmp_path, server.url, num_instructions=5)), progress=False)
        changed = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=5, temperature=0.2))
        with pytest.raises(SpecError, match=r"was generated with other settings \(sampling changed\)"):
            generate(changed, progress=False)
    foreign = tmp_path / "mine.jsonl"
    foreign.write_text('{"instruction": "x"}\n', encoding="utf-8")
    with pytest.raises(SpecError, match="has no mine.jsonl.journal.jsonl beside it"):
        generate(load_generate_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", output=str(foreign))), progress=False)


def test_sigkill_mid_run_then_resume_repeats_no_work(tmp_path: Path):
    target = 150
    with OpenAIServer(Composer(POOL, delay=0.08)) as server:  # 15 rounds of 10 requests: 1.2 s to kill it in
        spec_path = write_spec(tmp_path, server.url, "killed", num_instructions=target, concurrency=10)
        spec = load_generate_spec(spec_path)
        journal = journal_path(spec.output)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "dsc", "generate", str(spec_path), "-q"], cwd=REPO, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text(encoding="utf-8").count('"done"') >= 6:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        answered = {json.loads(line)["request"] for line in journal.read_text(encoding="utf-8").splitlines() if '"request"' in line}
        kept_before = len(spec.output.read_text(encoding="utf-8").splitlines())
        calls_before = len(server.calls)
        assert 0 < kept_before < target
        resumed = dsc_cli("generate", str(spec_path), "-q")  # the resume needs no process of its own; the kill did
        assert resumed.returncode == 0, resumed.stderr
        second = [c.prompt for c in server.calls[calls_before:]]
        assert not {prompt_for(spec, k) for k in answered} & set(second)  # no answered request asked again
        # the same run without a kill, on a fresh output: the same records, in the same order
        fresh_path = write_spec(tmp_path, server.url, "fresh", num_instructions=target, concurrency=10)
        assert dsc_cli("generate", str(fresh_path), "-q").returncode == 0
    assert f"{target} of {target} records" in resumed.stdout and "from an earlier run" in resumed.stdout
    assert records(spec.output) == records(tmp_path / "fresh.jsonl")


def test_an_edited_output_is_refused_with_its_line(tmp_path: Path):
    with OpenAIServer(Composer(POOL)) as server:
        spec = load_generate_spec(write_spec(tmp_path, server.url, num_instructions=3))
        generate(spec, progress=False)
        with spec.output.open("a", encoding="utf-8") as fh:
            fh.write('{"instruction": "added by hand", "input": "", "output": "x"}\n')
        result = dsc_cli("generate", str(spec.path), "-q")
    assert result.returncode == 2
    assert f"{spec.output}:4: not a record dsc generate wrote" in result.stderr
