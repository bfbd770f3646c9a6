"""A conversation package downstream: `dsc.load` + `dsc.collator`, `dsc export` and the launcher keep the per-turn
labels, and the launcher trains a tiny model on it on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chat_oracle import assistant_mask
from conftest import FORMATS, tiny_llama_config

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft (pip install -e .[train])")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in sharegpt format on 8 conversations (6 train, 2 validation), without the tools' system prompt and
    cut to 256 tokens by whole turns: short rows keep a 151k-vocabulary CPU step at a second or two."""
    import dsc

    folder = tmp_path_factory.mktemp("chat-pkg")
    text = (FORMATS / "sharegpt.yaml").read_text(encoding="utf-8").replace("path: data/", f"path: {FORMATS}/data/")
    assert "\n  tools: tools\n" in text
    (folder / "sharegpt.yaml").write_text(text.replace("\n  tools: tools\n", "\n"), encoding="utf-8")
    return dsc.build(folder / "sharegpt.yaml", output=folder / "pkg", limit=8, split={"validation": 2}, lengths={"max_length": 256}).path


def test_load_collate_and_export_keep_turn_labels(package: Path, tmp_path: Path, hf_tokenizer) -> None:
    from dsc.builders.export import export

    import dsc

    train, manifest = dsc.load(package, split="train")
    counts = manifest["counts"]
    assert len(train) == counts["kept"]["train"] >= 4 and counts["span_fallback"] == 0 and counts["truncated"] > 0
    for row in train:
        mask = assistant_mask(row["input_ids"])
        assert row["labels"] == [t if m else -100 for t, m in zip(row["input_ids"], mask, strict=True)]
    batch = dsc.collator(hf_tokenizer)([train[0], train[1]])
    width = batch["input_ids"].shape[1]
    for i in range(2):
        labels = train[i]["labels"]
        assert batch["labels"][i].tolist() == labels + [-100] * (width - len(labels))

    exported = export(package, "axolotl", tmp_path / "axolotl")
    table = pq.read_table(exported.folder / "train.parquet")
    assert table.column("labels").to_pylist() == [r["labels"] for r in train]


def test_launcher_trains_on_conversations_on_cpu(package: Path, tmp_path: Path, hf_tokenizer) -> None:
    from transformers import LlamaForCausalLM

    model_dir = tmp_path / "tiny"
    tokenizer = hf_tokenizer
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer, max_position_embeddings=4096, bos_token_id=None)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    args = ["--method", "lora", "--model", str(model_dir), "--output_dir", str(out), "--max_steps", "2"]
    # One conversation a step: the launcher trains a Qwen3-tokenized package (151k-row output layer) end to end here.
    args += ["--per_device_train_batch_size", "1", "--global_batch_size", "1", "--logging_steps", "1", "--eval_strategy", "no"]
    # The package's own train.py in this process (what `launch.sh --gpus 0` execs; test_launcher.py runs launch.sh
    # itself end to end): a Python start-up and the torch/transformers/peft imports fewer.
    spec = importlib.util.spec_from_file_location("chat_package_train", package / "train.py")
    train_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_py)
    train_py.main(args)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and all(math.isfinite(loss) for _, loss in summary["losses"])
    assert (out / "adapter_config.json").is_file()
