"""A package is a function of its spec and data alone: builds into different folders, with and without worker
processes, and from a copy of the spec and data somewhere else, are byte-identical in every file, and no file of a
package holds an absolute local path."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import DATA, FORMATS, REPO, WORKERS
from dsc.compiler.tokenizer import qwen3_path

import dsc


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical_in_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WORKERS.items():  # the two-worker build really forks its workers
        monkeypatch.setenv(name, value)
    elsewhere = tmp_path / "somewhere" / "else"
    (elsewhere / "data").mkdir(parents=True)
    shutil.copy(FORMATS / "alpaca.yaml", elsewhere / "alpaca.yaml")
    shutil.copy(DATA / "alpaca_en_demo.json", elsewhere / "data" / "alpaca_en_demo.json")
    builds = {
        "one process": dsc.build(FORMATS / "alpaca.yaml", output=tmp_path / "a", limit=200).path,
        "two workers": dsc.build(FORMATS / "alpaca.yaml", output=tmp_path / "deeper" / "b", limit=200, num_proc=2).path,
        "a copy elsewhere": dsc.build(elsewhere / "alpaca.yaml", output=elsewhere / "out", limit=200).path,
    }
    first = files(builds["one process"])
    assert {"README.md", "manifest.json", "duplicates.jsonl", "training.json", "launch.sh", "train.py"} <= set(first)
    assert any(name.startswith("data/validation-") for name in first)
    for how, folder in builds.items():
        other = files(folder)
        assert sorted(other) == sorted(first), how
        for name, data in first.items():
            assert other[name] == data, f"{name} differs ({how})"
    local = {str(tmp_path), str(REPO), sys.prefix, str(qwen3_path()), str(Path.home())}
    for name, data in first.items():
        text = data.decode("utf-8", errors="replace")
        for path in local:
            assert path not in text, f"{name} holds the local path {path}"
