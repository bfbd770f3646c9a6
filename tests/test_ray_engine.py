"""`--engine ray` builds the very package the local engine builds: every file byte for byte, on a held-out set with
near-copies, exact copies, invalid records and a validation split, cut into many chunks so many windows flow through
Ray. And the Ray group-by gives dedup the same pairs as numpy's `buckets`."""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DATA, REPO, WORKERS
from dsc.compiler.dedup.lsh import buckets
from dsc.compiler.engine import Engine, make_engine
from dsc.compiler.errors import DscError
from near_copies import chinese_edit, english_edit, with_near_copies
from test_reproducible import files

import dsc
from dsc.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray copying its own context


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """One small local Ray instance for the module (2 CPUs, 512 MiB object store); the engines join it and leave it
    running. Workers import dsc from this checkout. Skips where Ray is not installed (`pip install 'dsc[ray]'`)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        for name in ("RAY_ADDRESS", "DSC_RAY_ADDRESS"):
            env.delenv(name, raising=False)
        ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            yield make_engine("ray", 2)
        finally:
            ray.shutdown()


def _records() -> list[dict[str, Any]]:
    """~300 records: Alpaca and AdGen texts, near-copies of a third of them, a few exact copies, a few invalid."""
    alpaca = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:110]
    adgen = [json.loads(line) for line in (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()[:50]]
    vocabulary = sorted({w for r in alpaca for w in r["output"].split() if w.isalpha()})
    english, _ = with_near_copies(alpaca, ["instruction", "output"], english_edit(vocabulary), seed=11, share=0.35)
    chinese = [{"instruction": r["content"], "input": "", "output": r["summary"]} for r in adgen]
    alphabet = sorted({c for r in chinese for c in r["output"]})
    chinese, _ = with_near_copies(chinese, ["output"], chinese_edit(alphabet), seed=12, share=0.35)
    rng = random.Random(13)
    records = english + chinese + rng.sample(english, 10)
    invalid = [{"instruction": "no answer"}, {"instruction": 7, "output": "a number"}, {"output": "no question"}] * 4
    records += invalid
    rng.shuffle(records)
    return records


def _spec(tmp: Path, tokenizer: Path) -> Path:
    data = tmp / "held_out.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records()), encoding="utf-8")
    spec = tmp / "held_out.yaml"
    spec.write_text(
        f"name: held-out\nsources: [{{path: {data.name}}}]\n"
        "fields:\n  instruction: {type: string, required: true}\n  input: {type: string, default: ''}\n"
        "  output: {type: string, required: true}\n"
        'templates:\n  prompt: "{{ instruction }}\\n{{ input }}\\n"\n  response: "{{ output }}"\n'
        f"tokenizer: {tokenizer}\nlengths: {{max_length: 128}}\non_invalid: skip\n"
        "split: {validation: 0.1, seed: 5}\ndedup: {compare: prompt+response, keep: longest}\n",
        encoding="utf-8",
    )
    return spec


def test_ray_builds_the_local_engines_package_byte_for_byte(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_tokenizer: Path
) -> None:
    for name, value in WORKERS.items():  # 16-record chunks: many windows through Ray, forked workers locally
        monkeypatch.setenv(name, value)
    # The tiny tokenizer: what the engines must agree on does not depend on which one, and each Ray worker parses it.
    spec = _spec(tmp_path, tiny_tokenizer)
    # Ray through the CLI, as the README has it (it joins the fixture's Ray instead of starting one).
    assert main(["build", str(spec), "--engine", "ray", "-o", str(tmp_path / "ray"), "-q"]) == 0
    builds = {"ray": tmp_path / "ray", "local, two workers": dsc.build(spec, output=tmp_path / "local2", num_proc=2).path}
    first = files(dsc.build(spec, output=tmp_path / "local", num_proc=1).path)
    manifest = json.loads(first["manifest.json"])
    assert manifest["counts"]["invalid"] and manifest["counts"]["duplicates"], manifest["counts"]
    assert any(name.startswith("data/validation-") for name in first)
    assert engine.ray.is_initialized(), "the engine shut down a Ray instance it did not start"
    for how, folder in builds.items():
        other = files(folder)
        assert sorted(other) == sorted(first), how
        for name, data in first.items():
            assert other[name] == data, f"{name} differs ({how})"


def test_bucket_pairs_are_the_pairs_of_numpy_buckets(engine: Engine) -> None:
    rng = np.random.default_rng(0)
    members = np.sort(rng.choice(10_000, size=2_000, replace=False))
    for keys in (rng.integers(0, 300, size=2_000), rng.integers(0, 2**63, size=2_000, dtype=np.uint64) % np.uint64(1_500)):
        expected = set(zip(*(a.tolist() for a in buckets(keys, members)), strict=True))
        got = engine.bucket_pairs(keys, members)
        assert all(a.dtype == np.int64 for a in got)
        assert set(zip(*(a.tolist() for a in got), strict=True)) == expected
        assert len(got[0]) == len(expected)
    assert [len(a) for a in engine.bucket_pairs(np.arange(5), np.arange(5))] == [0, 0]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` raises ImportError
    with pytest.raises(DscError, match=r"pip install 'dsc\[ray\]'") as error:
        make_engine("ray")
    assert "\n" not in str(error.value)
