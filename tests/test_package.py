"""The dataset package: what `datasets` loads, the card, the manifest, atomic writes and fresh rebuilds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import DATA, FORMATS
from dsc.builders.package import write_package
from dsc.compiler.pipeline import PACKAGE_SCHEMA, Options, compile_spec, package_features, package_features_yaml
from dsc.compiler.spec import load_spec

import dsc


def card_header(package: Path) -> dict:
    text = (package / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n")[1])


def test_load_dataset_reads_the_folder_as_is(packages) -> None:
    package = packages("alpaca")
    loaded = datasets.load_dataset(str(package))
    assert isinstance(loaded, datasets.DatasetDict)
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].column_names == ["input_ids", "labels", "prompt", "response", "source_id"]
    removed = len((package / "duplicates.jsonl").read_text(encoding="utf-8").splitlines())  # alpaca.yaml dedups
    assert len(loaded["train"]) + len(loaded["validation"]) == 999 - removed
    assert len(loaded["validation"]) == round(0.05 * 999)
    assert sorted(p.name for p in (package / "data").iterdir()) == [
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert loaded["train"][0]["source_id"].startswith("alpaca_en_demo.json#")


def test_the_spelled_out_features_are_what_datasets_writes(packages) -> None:
    """The build writes the Features' metadata without importing datasets: it must be datasets' own, byte for byte."""
    features = datasets.Features.from_arrow_schema(PACKAGE_SCHEMA)
    assert package_features() == features.to_dict()
    assert package_features_yaml() == features._to_yaml_list()
    shard = next((packages("adgen") / "data").glob("train-*.parquet"))
    written = pq.read_schema(shard)
    assert datasets.Features.from_arrow_schema(written) == features and written.remove_metadata() == PACKAGE_SCHEMA


def test_card_header_and_body(packages) -> None:
    package = packages("adgen")
    header = card_header(package)
    assert header["license"] == "other" and header["language"] == ["zh"]
    assert header["license_name"] == "adgen-research" and header["license_link"].startswith("https://")  # the Hub's keys for other
    assert header["task_categories"] == ["text-generation"]
    assert header["size_categories"] == ["1K<n<10K"]
    assert header["pretty_name"] == "ADGEN (dsc)"
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "validation", "path": "data/validation-*.parquet"},
    ]
    info = header["dataset_info"]
    assert [f["name"] for f in info["features"]] == ["input_ids", "labels", "prompt", "response", "source_id"]
    manifest = json.loads((package / "manifest.json").read_text())
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == manifest["counts"]["kept"]
    body = (package / "README.md").read_text(encoding="utf-8")
    assert "问：{{ content }}\n答：" in body  # the template
    assert "## Example" in body and "## Tokens" in body and "boundary drift" in body
    assert "## Source\n\n- homepage: https://github.com/THUDM/ChatGLM-6B/tree/main/ptuning" in body


def test_manifest_records_inputs_tokenizer_counts(packages) -> None:
    package = packages("alpaca")
    m = json.loads((package / "manifest.json").read_text())
    src = DATA / "alpaca_en_demo.json"
    assert m["inputs"] == [
        {"path": "data/alpaca_en_demo.json", "format": "json", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(), "records": 999}
    ]
    assert m["templates"][0]["file"] == "dsc:templates/alpaca_prompt.j2" and len(m["templates"][0]["sha256"]) == 64
    assert m["spec"]["path"] == "alpaca.yaml" and "path" not in m["tokenizer"] and "output" not in m["spec"]["resolved"]
    assert m["tokenizer"]["name"] == "qwen3" and m["tokenizer"]["eos_token"] == "<|im_end|>" and len(m["tokenizer"]["sha256"]) == 64
    assert m["counts"]["read"] == 999 and m["counts"]["truncated"] > 0
    assert m["spec"]["resolved"]["lengths"] == {
        "max_length": 512,
        "max_source_length": None,
        "max_target_length": None,
        "source_overflow": "truncate",
        "target_overflow": "truncate",
        "prompt_truncation": "right",
        "min_target_tokens": 16,
    }
    assert m["spec"]["resolved"]["labels"] == {"train_on_prompt": False, "turns": "last"}
    assert m["spec"]["resolved"]["tokenizer"]["name"] == "qwen3"
    for rel, info in m["files"].items():
        assert hashlib.sha256((package / rel).read_bytes()).hexdigest() == info["sha256"]
    total = m["tokens"]["total"]
    assert 0 < total["trainable"] < total["tokens"]
    assert total["trainable_share"] == round(total["trainable"] / total["tokens"], 4)
    assert m["versions"]["datasets"] == datasets.__version__


def test_same_input_same_split_whatever_the_order(tmp_path: Path) -> None:
    lines = (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    spec_text = (FORMATS / "adgen.yaml").read_text(encoding="utf-8").replace("data/adgen_dev.jsonl", str(tmp_path / "d.jsonl"))
    spec = tmp_path / "adgen.yaml"
    spec.write_text(spec_text, encoding="utf-8")

    def validation_prompts(order: list[str], out: str) -> set[str]:
        (tmp_path / "d.jsonl").write_text("\n".join(order), encoding="utf-8")
        package = dsc.build(spec, output=tmp_path / out).path
        return set(datasets.load_dataset(str(package))["validation"]["prompt"])

    first = validation_prompts(lines, "a")
    assert len(first) == 10
    assert validation_prompts(lines, "b") == first
    assert validation_prompts(list(reversed(lines)), "c") == first


def test_failed_build_leaves_the_old_package(tmp_path: Path, packages) -> None:
    target = tmp_path / "pkg"
    shutil.copytree(packages("adgen"), target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    compiled = compile_spec(load_spec(FORMATS / "alpaca.yaml"), Options(limit=20))

    def interrupted(stage: Path, _compiled) -> None:
        assert (stage / "data").is_dir()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_package(compiled, target, extra=[interrupted])
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_rebuild_in_place_loads_the_new_rows(tmp_path: Path) -> None:
    """datasets caches a carded folder by its YAML header: the header must change when the data does."""
    spec = tmp_path / "adgen.yaml"
    original = (FORMATS / "adgen.yaml").read_text(encoding="utf-8").replace("data/adgen_dev.jsonl", str(DATA / "adgen_dev.jsonl"))
    target = tmp_path / "pkg"
    prompts = []
    for marker in ("问：", "问:"):  # same lengths, same counts, different text
        spec.write_text(original.replace('prompt: "问：', f'prompt: "{marker}'), encoding="utf-8")
        dsc.build(spec, output=target, limit=40)
        prompts.append(datasets.load_dataset(str(target))["train"][0]["prompt"])
    assert prompts[0].startswith("问：") and prompts[1].startswith("问:")


def test_every_built_in_format_builds(tmp_path: Path) -> None:
    from dsc.compiler import resources

    names = [p.stem for p in resources.builtin_formats()]
    assert {"alpaca", "adgen", "adgen-chatglm", "adgen-chatglm2", "gorilla", "gorilla-retriever"} <= set(names)
    for name in names:
        package = dsc.build(FORMATS / f"{name}.yaml", output=tmp_path / name, limit=60).path
        loaded = datasets.load_dataset(str(package))
        eos_id = json.loads((package / "manifest.json").read_text())["tokenizer"]["eos_id"]
        rows = [r for split in loaded.values() for r in split]
        assert rows, name
        for row in rows:
            assert len(row["input_ids"]) == len(row["labels"])
            assert [label for label in row["labels"] if label != -100][-1] == eos_id  # EOS (a chat turn's end) trained
            assert all(label in (-100, tok) for label, tok in zip(row["labels"], row["input_ids"], strict=True))


def test_a_killed_build_is_cleaned_up_by_the_next(tmp_path: Path, packages) -> None:
    """SIGKILL leaves staging folders behind (no handler runs); the next build removes them, and puts back a package
    that was moved aside when the kill came between the two renames."""
    import subprocess
    import sys

    from dsc.builders.package import reclaim

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    target = tmp_path / "pkg"
    stale = tmp_path / f".pkg.tmp-{pid}-abcd1234"
    stale.mkdir()
    (stale / "half.parquet").write_bytes(b"x")
    moved = tmp_path / f".pkg.old-{pid}-abcd1234"
    shutil.copytree(packages("adgen"), moved)
    live = tmp_path / f".pkg.tmp-{os.getpid()}-ffff0000"  # a build still running: not touched
    live.mkdir()
    reclaim(target)
    assert not stale.exists() and not moved.exists() and live.exists()
    assert (target / "manifest.json").is_file()  # the old package is back in place
    live.rmdir()
    dsc.build(FORMATS / "adgen.yaml", output=target, limit=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_system_template_train_on_prompt_and_validation_count(tmp_path: Path) -> None:
    records = [json.dumps({"q": f"question {i}?", "a": f"answer {i}."}) for i in range(30)]
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(records), encoding="utf-8")
    spec = tmp_path / "qa.yaml"
    spec.write_text(
        f"""name: qa
sources: [{{path: {data}}}]
fields: {{q: {{type: string, required: true}}, a: {{type: string, required: true}}}}
templates:
  system: "You answer briefly.\\n"
  prompt: "Q: {{{{ q }}}}\\nA:"
  response: " {{{{ a }}}}"
labels: {{train_on_prompt: true}}
split: {{validation: 7, seed: 3}}
""",
        encoding="utf-8",
    )
    package = dsc.build(spec, output=tmp_path / "out").path
    loaded = datasets.load_dataset(str(package))
    assert (len(loaded["train"]), len(loaded["validation"])) == (23, 7)
    row = loaded["train"][0]
    assert row["prompt"].startswith("You answer briefly.\nQ: question ") and row["prompt"].endswith("\nA:")
    assert row["labels"] == row["input_ids"]  # train_on_prompt: nothing masked


def test_card_carries_sources_and_citation(tmp_path: Path) -> None:
    citation = "@misc{alpaca,\n  title = {Stanford Alpaca},\n  year = {2023}\n}"
    built = dsc.build(FORMATS / "alpaca.yaml", output=tmp_path / "a", limit=20, dedup=False,
                      source_datasets=["tatsu-lab/alpaca"], homepage="https://crfm.stanford.edu/2023/03/13/alpaca.html",
                      citation=citation)
    header = card_header(built.path)
    assert header["source_datasets"] == ["tatsu-lab/alpaca"] and "license_name" not in header
    body = (built.path / "README.md").read_text(encoding="utf-8")
    assert f"## Citation\n\n```bibtex\n{citation}\n```" in body and "- source datasets: tatsu-lab/alpaca" in body
