"""The command line as a user meets it: formats, validate, preview, build with options, and a light startup.

Commands run in this process (conftest's `dsc_cli`) unless the test is about the process: `dsc formats` and the
second build of the worker test run the real CLI, and the startup test runs fresh interpreters."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
from conftest import CLI_SERVER_PROCESS, REPO, WARM_DSC, WORKERS, dsc_cli, run_dsc, warm_cli_env


def test_formats_lists_builtins() -> None:
    result = run_dsc("formats")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"alpaca", "adgen", "adgen-chatglm", "adgen-chatglm2", "gorilla", "gorilla-retriever"} <= set(names)


def test_validate_writes_nothing(tmp_path: Path) -> None:
    result = dsc_cli("validate", str(REPO / "formats/gorilla.yaml"), "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "837 records read, 835 valid, 2 invalid" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_preview_marks_masked_tokens(tmp_path: Path) -> None:
    result = dsc_cli("preview", str(REPO / "formats/gorilla.yaml"), "-n", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("── gorilla_torchhub_train.jsonl#") == 3
    assert "[###]|[USER]" in out  # prompt tokens shown masked
    assert "|<|im_end|>" in out and "[<|im_end|>]" not in out  # the EOS is trained
    assert list(tmp_path.iterdir()) == []


def test_build_by_builtin_name_with_options(tmp_path: Path) -> None:
    result = dsc_cli("build", "adgen", "--limit", "30", "--output", "pkg", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "30 read" in result.stdout
    phases = re.search(r"time: read \+ render [\d.]+ s, dedup [\d.]+ s, tokenize [\d.]+ s, write .* [\d.]+ s", result.stdout)
    assert phases, result.stdout  # seconds per phase on the terminal, never in the package (builds stay byte-identical)
    loaded = datasets.load_dataset(str(tmp_path / "pkg"))
    assert sum(len(s) for s in loaded.values()) == 30


def test_build_default_output_and_tokenizer_override(tmp_path: Path) -> None:
    from dsc.compiler.tokenizer import qwen3_path

    result = dsc_cli("build", str(REPO / "formats/alpaca.yaml"), "--limit", "20", "--tokenizer", str(qwen3_path()), "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "build/alpaca/manifest.json").read_text())
    # a local tokenizer folder is recorded relative to the spec's folder (no absolute path in a package), with its hash
    assert manifest["tokenizer"]["name"] == os.path.relpath(qwen3_path(), REPO / "formats")
    assert manifest["spec"]["resolved"]["tokenizer"]["name"] == manifest["tokenizer"]["name"]


def test_num_proc_gives_the_same_package(tmp_path: Path) -> None:
    for n in ("1", "2"):
        cli = dsc_cli if n == "1" else run_dsc  # one process in this one; the workers from a real CLI process
        result = cli("build", "alpaca", "--limit", "200", "--num-proc", n, "-o", f"p{n}", "-q", cwd=tmp_path, env=WORKERS)
        assert result.returncode == 0, result.stderr
    one, two = (json.loads((tmp_path / f"p{n}/manifest.json").read_text()) for n in ("1", "2"))
    assert one["files"] == two["files"]


def test_help_validate_and_build_do_not_import_torch_transformers_or_datasets(tmp_path: Path) -> None:
    """Each is a second or more of every CLI run: a build reads its splits from its own spills, not as Datasets."""
    spec = str(REPO / "formats/adgen.yaml")
    code = (
        "import sys; from dsc.cli import main; "
        f"rc = main(['validate', {spec!r}, '-q']) + main(['build', {spec!r}, '--limit', '40', '-o', 'pkg', '-q']); "
        "print(rc, *(name in sys.modules for name in ('torch', 'transformers', 'datasets')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert result.stdout.split()[-4:] == ["0", "False", "False", "False"], result.stderr
    assert (tmp_path / "pkg" / "manifest.json").is_file()
    help_run = subprocess.run([sys.executable, "-m", "dsc", "--help"], capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert help_run.returncode == 0 and "build" in help_run.stdout


def test_a_warm_run_is_a_cold_run(tmp_path: Path) -> None:
    """tests/cli_server.py, which `run_dsc` and the README's `dsc` go through, answers as `python -m dsc` does: the
    same output and exit code; a run killed by a signal ends its client by that signal, and a client killed (a test's
    timeout) takes its run with it."""
    import psutil

    for args in (["formats"], ["build", "nope.yaml"], ["--version"], ["build"]):
        cold = subprocess.run([sys.executable, "-m", "dsc", *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, text=True)
        warm = run_dsc(*args)
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr), args

    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    (tmp_path / "s.yaml").write_text(
        "name: slow\nsources: [{path: data.jsonl}]\nfields: {instruction: {type: string}, output: {type: string}}\n"
        'templates: {prompt: "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}", '
        'response: "{{ output }}"}\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), **warm_cli_env(), "DSC_RECORD_SECONDS": "60"}
    server = psutil.Process(CLI_SERVER_PROCESS[0].pid)
    for number in (signal.SIGTERM, signal.SIGKILL):
        client = subprocess.Popen([*WARM_DSC, "validate", "s.yaml", "-q"], cwd=tmp_path, env=env)
        deadline = time.monotonic() + 30
        while len(server.children(recursive=True)) < 2:  # the run has started (a supervisor and its run)
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.02)
        client.send_signal(number)
        assert client.wait(timeout=30) == -number
        while server.children(recursive=True):
            assert time.monotonic() < deadline, f"a run outlived its client ({number.name})"
            time.sleep(0.02)
