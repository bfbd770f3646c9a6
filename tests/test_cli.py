"""The command line as a user meets it: formats, validate, preview, build with options, and a light startup.

Commands run in this process (conftest's `dsc_cli`) unless the test is about the process: `dsc formats` and the
second build of the worker test run the real CLI, and the startup test runs fresh interpreters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
from conftest import REPO, WORKERS, dsc_cli, run_dsc


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
