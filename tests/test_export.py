"""`dsc export --to llamafactory|axolotl`, checked against each tool's documented input format, reading the files the
way the tool's own loader does (LLaMA-Factory 0.9: data/parser.py, data/loader.py `tokenized_path` + load_from_disk,
FILEEXT2TYPE; Axolotl: utils/data/shared.py local-file loading and wrappers.py's pre-tokenized check)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from conftest import FORMATS, dsc_cli
from dsc.compiler.tokenizer import qwen3_path
from tokenizers import Tokenizer

QWEN3 = Tokenizer.from_file(str(qwen3_path() / "tokenizer.json"))

MAX_LENGTH = 512
"""The alpaca format's lengths.max_length."""
LLAMAFACTORY_COLUMN_KEYS = {"prompt", "query", "response", "history", "messages", "system", "tools"}
LLAMAFACTORY_FILE_TYPES = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}


@pytest.fixture(scope="module")
def package(packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("export") / "alpaca"
    shutil.copytree(packages("alpaca"), copy)
    return copy


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def _export(package: Path, to: str) -> tuple[Path, dict]:
    before = _digest(package)
    result = dsc_cli("export", str(package), "--to", to)
    assert result.returncode == 0, result.stderr
    folder = package.parent / f"{package.name}-{to}"
    snippet_text = result.stdout.split("config:\n", 1)[1]
    assert snippet_text == (folder / f"{to}.yaml").read_text()
    assert _digest(package) == before  # the package is read, never written
    return folder, yaml.safe_load(snippet_text)


def test_llamafactory_export_matches_its_dataset_info_and_tokenized_path_formats(package: Path):
    folder, config = _export(package, "llamafactory")
    local = datasets.load_dataset(str(package))
    assert config["dataset_dir"] == str(folder) and config["template"] == "empty"
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {config["dataset"], config["eval_dataset"]}
    for name, split in ((config["dataset"], "train"), (config["eval_dataset"], "validation")):
        entry = info[name]
        assert entry["formatting"] == "alpaca" and set(entry["columns"]) <= LLAMAFACTORY_COLUMN_KEYS
        data_file = folder / entry["file_name"]
        kind = LLAMAFACTORY_FILE_TYPES[data_file.suffix[1:]]
        rows = datasets.load_dataset(kind, data_files=[str(data_file)], split="train")
        columns = entry["columns"]
        assert {columns["prompt"], columns["query"], columns["response"]} <= set(rows.column_names)
        # LLaMA-Factory's alpaca converter: prompt = instruction, then "\n" + input when input is non-empty.
        prompts = [r[columns["prompt"]] + ("\n" + r[columns["query"]] if r[columns["query"]] else "") for r in rows]
        assert prompts == local[split]["prompt"]
        # The `empty` template adds nothing to the answer: the text carries the EOS, so LLaMA-Factory's own encoding
        # (each message apart, add_special_tokens=False, special-token text read as its id) gives dsc's exact ids.
        assert rows[columns["response"]] == [r + "<|im_end|>" for r in local[split]["response"]]
        answers = [e.ids for e in QWEN3.encode_batch(rows[columns["response"]], add_special_tokens=False)]
        questions = [e.ids for e in QWEN3.encode_batch(prompts, add_special_tokens=False)]
        compared = 0
        for q, a, ids, labels in zip(questions, answers, local[split]["input_ids"], local[split]["labels"], strict=True):
            if len(q) + len(a) <= MAX_LENGTH:  # dsc cut the others to max_length; LLaMA-Factory cuts by its cutoff_len
                assert q + a == ids and [-100] * len(q) + a == labels
                compared += 1
        assert compared > 0.9 * len(rows)
    assert config["cutoff_len"] >= max(len(ids) for split in local.values() for ids in split["input_ids"])

    tokenized_path = Path(config["tokenized_path"])
    assert tokenized_path.is_dir() and any(tokenized_path.iterdir())  # LLaMA-Factory's has_tokenized_data
    tokenized = datasets.load_from_disk(str(tokenized_path))
    assert isinstance(tokenized, datasets.DatasetDict) and set(tokenized) == {"train", "validation"}
    for split in ("train", "validation"):
        assert tokenized[split].column_names == ["input_ids", "attention_mask", "labels"]
        assert tokenized[split]["input_ids"] == local[split]["input_ids"]
        assert tokenized[split]["labels"] == local[split]["labels"]
        assert all(
            mask == [1] * len(ids)
            for mask, ids in zip(tokenized[split]["attention_mask"], tokenized[split]["input_ids"], strict=True)
        )


def test_llamafactory_export_of_every_turn_trained_keeps_only_dsc_tokens(tmp_path: Path):
    """Records that train every assistant turn cannot go through the alpaca text route (it trains the last answer
    only): the export leaves that route out and points LLaMA-Factory at dsc's tokens."""
    spec = tmp_path / "chat.yaml"
    text = (FORMATS / "adgen-chatglm2.yaml").read_text(encoding="utf-8").replace("turns: last", "turns: all")
    spec.write_text(text.replace("path: data/", f"path: {FORMATS / 'data'}/"), encoding="utf-8")
    built = dsc_cli("build", str(spec), "--limit", "40", "-o", str(tmp_path / "chat"), "-q")
    assert built.returncode == 0, built.stderr
    folder, config = _export(tmp_path / "chat", "llamafactory")
    assert "dataset" not in config and not (folder / "dataset_info.json").exists()
    tokenized = datasets.load_from_disk(config["tokenized_path"])
    local = datasets.load_dataset(str(tmp_path / "chat"))
    assert tokenized["train"]["labels"] == local["train"]["labels"]
    def spans(labels: list[int]) -> int:
        return sum(1 for a, b in zip([-100, *labels], labels, strict=False) if a == -100 and b != -100)

    assert max(spans(labels) for labels in local["train"]["labels"]) > 1  # the case the text route would lose


def test_axolotl_export_is_a_pre_tokenized_dataset_with_exactly_its_three_columns(package: Path):
    folder, config = _export(package, "axolotl")
    local = datasets.load_dataset(str(package))
    entries = [("train", config["datasets"][0]), ("validation", config["test_datasets"][0])]
    assert config["val_set_size"] == 0  # Axolotl takes test_datasets or val_set_size, not both
    for split, entry in entries:
        assert entry["type"] is None and entry["ds_type"] == "parquet"  # empty `type:` = pre-tokenized
        path = Path(entry["path"])
        assert path.is_file() and path.parent == folder
        # Axolotl loads a local file as load_dataset(ds_type, data_files=path, split="train").
        rows = datasets.load_dataset(entry["ds_type"], data_files=str(path), split=entry.get("split", "train"))
        assert set(rows.features) == {"input_ids", "attention_mask", "labels"}
        assert rows["input_ids"] == local[split]["input_ids"] and rows["labels"] == local[split]["labels"]
        for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True):
            assert labels[0] == -100 and labels[-1] == ids[-1]  # prompt masked, EOS trained
    assert config["sequence_len"] >= max(len(ids) for split in local.values() for ids in split["input_ids"])


def test_export_of_a_folder_that_is_not_a_package_is_one_line(tmp_path: Path):
    result = dsc_cli("export", str(tmp_path), "--to", "axolotl")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("not a dsc package (no manifest.json); build one with `dsc build`")
    )
    assert not (tmp_path.parent / f"{tmp_path.name}-axolotl").exists()
