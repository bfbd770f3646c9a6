"""`dsc publish` and `dsc build --push` against a real HTTP Hub on 127.0.0.1 (tests/hub_server.py), driven by the real
huggingface_hub client through HF_ENDPOINT, the way a new user would: log in with `hf auth login`, publish, re-publish,
read it back with `datasets.load_dataset` and `dsc.load`. Every error path must be one line, exit non-zero, leave the
package untouched and never show the token."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import FORMATS, REPO, run_dsc
from hub_server import LoopbackHub, loopback_env

import dsc

TOKEN = "hf_dscTESTsecret0123456789abcdefALICE"
BOB_TOKEN = "hf_dscTESTsecret0123456789abcdefBOB"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's sha256 and mtime: what 'untouched' means."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def hub_env(hub_url: str, home: Path, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """The loopback hub's environment with Alice's token unless another is given."""
    return loopback_env(hub_url, home, token, **extra)


def assert_no_token(*texts: str, folders: tuple[Path, ...] = (), hub: LoopbackHub | None = None) -> None:
    for text in texts:
        assert TOKEN not in text
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file():
                assert TOKEN.encode() not in p.read_bytes(), p
    if hub is not None:
        for repo in hub.repos.values():
            for commits in repo.branches.values():
                for commit in commits:
                    assert TOKEN not in commit.message
                    assert all(TOKEN.encode() not in f.data for f in commit.files.values())


@pytest.fixture
def hub():
    with LoopbackHub() as h:
        h.add_user("alice", TOKEN, orgs=("dsc-org",))
        h.add_user("bob", BOB_TOKEN)
        yield h


@pytest.fixture
def package(packages, tmp_path: Path) -> Path:
    """A private copy of a built package (so 'untouched' is checked on a folder no other test writes)."""
    copy = tmp_path / "pkg" / "alpaca"
    shutil.copytree(packages("alpaca"), copy)
    return copy


def test_new_user_logs_in_publishes_privately_and_reads_it_back(hub: LoopbackHub, package: Path, tmp_path: Path):
    env = hub_env(hub.url, tmp_path, token="")
    login = subprocess.run(
        [str(Path(sys.executable).parent / "hf"), "auth", "login", "--token", TOKEN],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert login.returncode == 0, login.stderr
    assert (tmp_path / "hf" / "token").read_text().strip() == TOKEN  # the saved login, the only place it may be

    before = snapshot(package)
    first = run_dsc("publish", str(package), "--repo", "alice/alpaca-sft", "--private", env=env)
    assert first.returncode == 0, first.stderr
    assert "published" in first.stdout and "private" in first.stdout

    repo = hub.repo("alice/alpaca-sft")
    assert repo is not None and repo.private
    commits = repo.commits("main")
    assert len(commits) == 2  # the repo's initial commit and exactly one upload commit
    assert commits[-1].message.startswith("dsc publish alpaca (fingerprint ")
    remote = repo.files("main")
    local = {str(p.relative_to(package)): p.read_bytes() for p in package.rglob("*") if p.is_file()}
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local  # byte for byte, nothing else
    assert {"README.md", "manifest.json"} <= set(local) and any(k.startswith("data/") for k in local)

    # Private: anonymous readers and other users cannot see it.
    url = f"{hub.url}/api/datasets/alice/alpaca-sft"
    for headers in ({}, {"Authorization": f"Bearer {BOB_TOKEN}"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert err.value.code in (401, 404)

    again = run_dsc("publish", str(package), "--repo", "alice/alpaca-sft", "--private", env=env)
    assert again.returncode == 0, again.stderr
    assert "no new commit" in again.stdout
    assert len(repo.commits("main")) == 2
    assert snapshot(package) == before

    # Read it back through the same hub: datasets.load_dataset and dsc.load, with the saved login.
    manifest = json.loads((package / "manifest.json").read_text())
    code = (
        "import json, datasets, dsc\n"
        "ds = datasets.load_dataset('alice/alpaca-sft')\n"
        "loaded, manifest = dsc.load('alice/alpaca-sft', split='train')\n"
        "print(json.dumps({'splits': {k: len(v) for k, v in ds.items()}, 'fp': manifest['fingerprint'],\n"
        "  'first': loaded[0]['input_ids'], 'labels': loaded[0]['labels'], 'columns': loaded.column_names}))\n"
    )
    read = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr
    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert got["splits"] == manifest["counts"]["kept"]
    assert got["fp"] == manifest["fingerprint"]
    import datasets

    local_train = datasets.load_dataset(str(package), split="train")
    assert got["first"] == local_train[0]["input_ids"] and got["labels"] == local_train[0]["labels"]
    assert got["columns"] == local_train.column_names
    assert_no_token(
        first.stdout,
        first.stderr,
        again.stdout,
        again.stderr,
        read.stdout,
        read.stderr,
        login.stdout,
        folders=(package,),
        hub=hub,
    )


def test_lfs_uploads_and_a_changed_package_replaces_its_shards_on_a_new_branch(tmp_path: Path):
    """LFS upload mode (what huggingface.co asks for Parquet), a branch, and stale shards removed in the same commit."""
    with LoopbackHub(lfs=True) as hub:
        hub.add_user("alice", TOKEN, orgs=("dsc-org",))
        env = hub_env(hub.url, tmp_path, HF_HUB_DISABLE_XET="1")
        small = tmp_path / "gorilla-small"
        dsc.build(FORMATS / "gorilla.yaml", output=small, limit=30)  # the package is the subject, not its build
        first = run_dsc("publish", str(small), "--repo", "dsc-org/gorilla", env=env)
        assert first.returncode == 0, first.stderr
        repo = hub.repo("dsc-org/gorilla")
        assert repo is not None and not repo.private
        head = repo.head("main")
        parquet = [p for p in head.files if p.endswith(".parquet")]
        assert parquet and all(head.files[p].lfs for p in parquet)
        assert not head.files["manifest.json"].lfs
        assert any(m == "PUT" and p.startswith("/lfs-store/") for m, p, _ in hub.requests)
        for rel in parquet:
            assert head.files[rel].data == (small / rel).read_bytes()

        # Same name, different content, on a new branch: main keeps the first, the branch gets the second.
        bigger = tmp_path / "gorilla-bigger"
        dsc.build(FORMATS / "gorilla.yaml", output=bigger, limit=60)
        second = run_dsc(
            "publish",
            str(bigger),
            "--repo",
            "dsc-org/gorilla",
            "--revision",
            "v2",
            "--message",
            "sixty records",
            env=env,
        )
        assert second.returncode == 0, second.stderr
        assert "/tree/v2" in second.stdout
        assert repo.files("main") == {p: f.data for p, f in head.files.items()}
        assert repo.commits("v2")[-1].message == "sixty records"
        v2 = repo.files("v2")
        assert {k for k in v2 if k.startswith("data/")} == {
            str(p.relative_to(bigger)) for p in (bigger / "data").iterdir()
        }
        assert all(v2[str(p.relative_to(bigger))] == p.read_bytes() for p in bigger.rglob("*") if p.is_file())
        assert_no_token(first.stdout, first.stderr, second.stdout, second.stderr, hub=hub)


def test_republish_removes_shards_the_package_no_longer_has(hub: LoopbackHub, package: Path, tmp_path: Path):
    env = hub_env(hub.url, tmp_path)
    hub.create_repo("alice/alpaca-sft")
    repo = hub.repo("alice/alpaca-sft")
    assert repo is not None
    stale = "data/train-00001-of-00002.parquet"
    first_commit = repo.branches["main"][-1]
    from hub_server import Commit, StoredFile

    files = {**first_commit.files, stale: StoredFile(b"PAR1 stale shard", lfs=False)}
    repo.branches["main"].append(Commit("f" * 40, "an older build", files, first_commit.oid))
    result = run_dsc("publish", str(package), "--repo", "alice/alpaca-sft", env=env)
    assert result.returncode == 0, result.stderr
    assert stale not in repo.files("main")
    assert len(repo.commits("main")) == 3  # one commit did both: uploads and the deletion


def test_build_push_builds_then_publishes(hub: LoopbackHub, tmp_path: Path):
    env = hub_env(hub.url, tmp_path)
    out = tmp_path / "adgen"
    result = run_dsc(
        "build", "formats/adgen.yaml", "--limit", "25", "-o", str(out), "-q", "--push", "alice/adgen", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "published" in result.stdout
    repo = hub.repo("alice/adgen")
    assert repo is not None and not repo.private
    assert repo.files("main")["manifest.json"] == (out / "manifest.json").read_bytes()
    assert_no_token(result.stdout, result.stderr, folders=(out,), hub=hub)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("offline", "offline mode is on (HF_HUB_OFFLINE=1)"),
        ("no token", "no Hugging Face token"),
        ("bad token", "rejected the token from HF_TOKEN"),
        ("someone else's repo", "which the token's user 'alice' cannot write to"),
        ("network down", "cannot reach the Hub at http://127.0.0.1:"),
        ("private over public", "already exists and is public"),
        ("not a package", "not a dsc package (no manifest.json)"),
        ("edited shard", "changed since the build"),
    ],
)
def test_each_failure_is_one_line_and_leaves_everything_untouched(
    case: str, expect: str, hub: LoopbackHub, package: Path, tmp_path: Path
):
    hub.create_repo("bob/data")
    hub.create_repo("alice/public")
    env = hub_env(hub.url, tmp_path)
    target, args = package, ["--repo", "alice/alpaca-sft"]
    if case == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    elif case == "no token":
        env["HF_TOKEN"] = ""
    elif case == "bad token":
        env["HF_TOKEN"] = TOKEN[:-5] + "WRONG"
    elif case == "someone else's repo":
        args = ["--repo", "bob/data"]
    elif case == "network down":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    elif case == "private over public":
        args = ["--repo", "alice/public", "--private"]
    elif case == "not a package":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "edited shard":
        shard = next((package / "data").glob("train-*.parquet"))
        shard.write_bytes(shard.read_bytes()[:-10])
    before = snapshot(target)
    requests_before = len(hub.requests)
    result = run_dsc("publish", str(target), *args, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dsc publish: publish failed: ") and expect in lines[0]
    assert result.stdout == ""
    assert snapshot(target) == before
    assert all(m != "POST" or "/commit/" not in p for m, p, _ in hub.requests[requests_before:])
    assert len(hub.repo("bob/data").commits()) == 1 and len(hub.repo("alice/public").commits()) == 1
    assert_no_token(result.stdout, result.stderr, folders=(target,), hub=hub)
    if case == "bad token":
        assert TOKEN[:-5] not in result.stderr
