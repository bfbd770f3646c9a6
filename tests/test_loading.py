"""`dsc.load` on a local folder: the dataset and the manifest, or a located error for a folder that is no package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dsc.compiler.errors import DscError

import dsc


def test_load_returns_the_splits_and_the_manifest(packages):
    folder = packages("alpaca")
    dataset, manifest = dsc.load(folder)
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert {name: len(split) for name, split in dataset.items()} == manifest["counts"]["kept"]
    train = dsc.load(str(folder), split="train").dataset
    assert train["input_ids"] == dataset["train"]["input_ids"]


def test_load_of_a_folder_without_a_manifest_names_it(tmp_path: Path):
    with pytest.raises(DscError) as err:
        dsc.load(tmp_path)
    assert str(tmp_path) in str(err.value) and "not a dsc package" in str(err.value)
