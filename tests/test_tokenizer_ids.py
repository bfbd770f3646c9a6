"""Tokenizer names: Hub ids (dots and all) from the Hugging Face cache offline, local paths, and errors that name their origin.

The cache is a real huggingface_hub cache layout in tmp (blobs, snapshots/<commit> symlinks, refs/main) holding Qwen3's
real tokenizer files under `Qwen/Qwen3-0.6B`; the CLI runs in a subprocess with HF_HOME pointing at it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import FORMATS, run_dsc
from dsc.compiler.errors import SpecError
from dsc.compiler.spec import TokenizerSpec, load_spec
from dsc.compiler.tokenizer import load_tokenizer, qwen3_path

COMMIT = "c1899de289a04d12100db370d81485cdf75e47ca"
REPO_ID = "Qwen/Qwen3-0.6B"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HF_HOME whose hub cache holds Qwen/Qwen3-0.6B at COMMIT (refs/main), laid out as huggingface_hub writes it."""
    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "models--Qwen--Qwen3-0.6B"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        data = (qwen3_path() / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return home


def _offline(hf_home: Path) -> dict[str, str]:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_home / "hub")}


def test_hub_id_with_dots_builds_from_the_cache_offline(hf_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    done = run_dsc("build", "adgen", "--limit", "20", "-o", str(out), "--tokenizer", REPO_ID, "-q", env=_offline(hf_home))
    assert done.returncode == 0, done.stderr
    tok = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["tokenizer"]
    assert tok["name"] == REPO_ID
    assert str(hf_home) not in json.dumps(tok)  # a package names its tokenizer, never the cache folder it came from
    assert tok["sha256"] == load_tokenizer(TokenizerSpec(name="qwen3")).sha256  # the cached files are Qwen3's


def test_spec_hub_id_pinned_to_a_commit_previews_offline(hf_home: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "adgen.yaml"
    pinned = f"tokenizer: {{name: {REPO_ID}, revision: {COMMIT}}}"
    spec_file.write_text((FORMATS / "adgen.yaml").read_text(encoding="utf-8").replace("tokenizer: qwen3", pinned))
    shutil.copytree(FORMATS / "data", tmp_path / "data")
    done = run_dsc("preview", str(spec_file), "-n", "1", env=_offline(hf_home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"adgen: 1 record(s); tokenizer {REPO_ID};")


def test_bad_hub_id_names_the_option_in_one_line(hf_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    done = run_dsc("build", "adgen", "--limit", "5", "-o", str(out), "--tokenizer", "Qwen/Qwen3-0.7B", "-q", env=_offline(hf_home))
    assert done.returncode == 2
    problems = done.stderr.splitlines()[1:]
    assert done.stderr.splitlines()[0] == "dsc build: spec error:"
    assert len(problems) == 1 and problems[0].startswith("  --tokenizer: 'Qwen/Qwen3-0.7B' is not in the Hugging Face cache")
    assert "adgen.yaml" not in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", ["./tok", "../tok", "/nonexistent/tok", "~/nonexistent-tok", "tok/tokenizer.json", "a/b/c"])
def test_path_like_names_that_do_not_exist(name: str) -> None:
    with pytest.raises(SpecError) as err:
        load_tokenizer(TokenizerSpec(name=name))
    assert err.value.exit_code == 2
    assert str(err.value).startswith(f"tokenizer: no tokenizer folder at '{name}' (")


def test_invalid_hub_id_is_refused_without_the_network() -> None:
    with pytest.raises(SpecError, match=r"'bad id!' is neither a local tokenizer folder nor a Hub id"):
        load_tokenizer(TokenizerSpec(name="bad id!"))


def test_local_folder_and_its_tokenizer_json(tmp_path: Path) -> None:
    folder = tmp_path / "v1.5.tok"  # dots in a local name: it exists, so it is a path
    shutil.copytree(qwen3_path(), folder)
    by_folder = load_tokenizer(TokenizerSpec(name=str(folder)))
    by_file = load_tokenizer(TokenizerSpec(name=str(folder / "tokenizer.json")))
    assert by_folder.path == by_file.path == str(folder) and by_folder.sha256 == by_file.sha256
    with pytest.raises(SpecError, match="is a file; give the tokenizer's folder or its tokenizer.json"):
        load_tokenizer(TokenizerSpec(name=str(folder / "merges.txt")))


def test_spec_tokenizer_problem_names_the_spec_line(tmp_path: Path) -> None:
    spec_file = tmp_path / "adgen.yaml"
    spec_file.write_text((FORMATS / "adgen.yaml").read_text(encoding="utf-8").replace("tokenizer: qwen3", "tokenizer: ./tok"))
    shutil.copytree(FORMATS / "data", tmp_path / "data")
    line = spec_file.read_text().splitlines().index("tokenizer: ./tok") + 1
    spec = load_spec(spec_file)
    with pytest.raises(SpecError) as err:
        load_tokenizer(spec.tokenizer, spec)
    assert str(err.value).startswith(f"{spec_file}:{line}: tokenizer: no tokenizer folder at './tok'")
    overridden = load_spec(spec_file, {"tokenizer": "./other"}, {"tokenizer": "--tokenizer"})
    with pytest.raises(SpecError) as err:
        load_tokenizer(overridden.tokenizer, overridden)
    assert str(err.value).startswith("--tokenizer: no tokenizer folder at './other'")
