"""Nothing lost, nothing broken reported as success: every case runs the CLI (`dsc.cli.main`, in this process to keep
the cases fast; the Hub cases run it as a process, since huggingface_hub reads HF_ENDPOINT at import) on a real
project folder and checks the exit code, a located one-line reason and no traceback, and that every file around it
(the user's files, an existing package) is byte for byte what it was, with nothing left aside."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, FORMATS, REPO, run_dsc
from hub_server import LoopbackHub, loopback_env

from dsc.cli import main

TOKEN = "hf_dscTESTsecret0123456789abcdefSAFETY"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """`cli(*args, cwd=folder)` -> (exit code, stdout, stderr) of the CLI run in `folder`."""

    def run(*args: str, cwd: Path) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.chdir(cwd)
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def tree(*folders: Path) -> dict[str, str]:
    """Every entry under the folders (hidden ones too) with a file's sha256: what 'untouched' means."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture
def project(tmp_path: Path, packages) -> Path:
    """A user's folder: an ADGEN spec and its data, notes, a folder of their own, and a package built earlier."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    lines = (DATA / "adgen_dev.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    (proj / "data" / "adgen.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = (FORMATS / "adgen.yaml").read_text(encoding="utf-8").replace("data/adgen_dev.jsonl", "data/adgen.jsonl")
    (proj / "adgen.yaml").write_text(spec, encoding="utf-8")
    (proj / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (proj / "mine").mkdir()
    (proj / "mine" / "results.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    shutil.copytree(packages("adgen"), proj / "build" / "adgen")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("export X=1\n", encoding="utf-8")
    return proj


def _edit_spec(proj: Path, old: str, new: str) -> None:
    spec = proj / "adgen.yaml"
    text = spec.read_text(encoding="utf-8")
    assert old in text
    spec.write_text(text.replace(old, new), encoding="utf-8")


def _write_data(proj: Path, text: str) -> None:
    (proj / "data" / "adgen.jsonl").write_text(text, encoding="utf-8")


BUILD_CASES = {
    # name: (arguments after the spec, how to prepare the project, exit code, what the message says)
    "-o . (the spec's folder)": (["-o", "."], None, 2, "holds the spec"),
    "output: '.' in the spec": ([], lambda p: _edit_spec(p, "name: adgen\n", "name: adgen\noutput: '.'\n"), 2, "holds the spec"),
    "-o .. (above the spec)": (["-o", ".."], None, 2, "holds the spec"),
    "-o ~ (the home folder)": (["-o", "~"], None, 2, "is not empty and is not a dsc package"),
    "-o a file": (["-o", "notes.txt"], None, 2, "is a file, and a dsc package is a folder"),
    "-o the sources' folder": (["-o", "data"], None, 2, "holds the source"),
    "-o a folder of the user's": (["-o", "mine"], None, 2, "is not empty and is not a dsc package"),
    "empty input": ([], lambda p: _write_data(p, ""), 1, "sources: no records to build in"),
    "only blank lines": ([], lambda p: _write_data(p, "\n\n   \n\n"), 1, "sources: no records to build in"),
    "every record skipped": (
        [],
        lambda p: (_edit_spec(p, "name: adgen\n", "name: adgen\non_invalid: skip\n"), _write_data(p, '{"content": "x"}\n' * 5)),
        1,
        "on_invalid: all 5 record(s) were skipped as invalid, nothing left to build (invalid: ",
    ),
    "validation count above the records": (
        [],
        lambda p: _edit_spec(p, "validation: 0.05", "validation: 500"),
        1,
        "split.validation: 500 asks for 500 validation record(s) of the 30 valid one(s)",
    ),
    "every training record dropped": (
        [],
        lambda p: (_edit_spec(p, "max_source_length: 64", "max_source_length: 2"), _edit_spec(p, "overflow: truncate", "overflow: drop")),
        1,
        "no training records left: every one was dropped (",
    ),
}


@pytest.mark.parametrize("case", list(BUILD_CASES))
def test_a_build_that_would_lose_data_or_write_nothing_is_refused(
    case: str, project: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, prepare, code, message = BUILD_CASES[case]
    if prepare is not None:
        prepare(project)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = tree(tmp_path)
    returned, out, err = cli("build", "adgen.yaml", "-q", *args, cwd=project)
    assert returned == code, err
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert lines[0] == "dsc build: error:" and len(lines) == 2, err
    assert message in lines[1]
    located = re.match(r"  (/\S+?)(:\d+)?: ", lines[1])  # the path refused, or the spec file and line
    assert located and Path(located.group(1)).exists(), lines[1]
    assert tree(tmp_path) == before  # the user's files, the old package: same bytes, nothing added or moved aside


def test_the_normal_layouts_still_build(project: Path, cli) -> None:
    """build/<name> in the spec's folder (replacing the package there), a new folder inside it, an empty folder, and
    a spec given from another folder with the default output relative to where dsc runs are all fine."""
    (project / "empty").mkdir()
    for args in (["adgen.yaml"], ["adgen.yaml", "-o", "out/fresh"], ["adgen.yaml", "-o", "empty"]):
        code, _out, err = cli("build", *args, "-q", "--limit", "12", cwd=project)
        assert code == 0, err
    code, _out, err = cli("build", str(project / "adgen.yaml"), "-q", "--limit", "12", cwd=project.parent)
    assert code == 0, err
    assert sorted(p.name for p in (project / "build").iterdir()) == ["adgen"]
    for folder in (project / "build" / "adgen", project / "out" / "fresh", project / "empty", project.parent / "build" / "adgen"):
        assert json.loads((folder / "manifest.json").read_text())["counts"]["read"] == 12


def test_export_refuses_targets_it_does_not_own_and_replaces_its_own(packages, tmp_path: Path, cli) -> None:
    package = tmp_path / "adgen"
    shutil.copytree(packages("adgen"), package)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("keep\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("keep\n", encoding="utf-8")
    cases = {
        str(package): "holds the package",
        str(package / "export"): "is inside the package",
        str(tmp_path): "holds the package",
        str(tmp_path / "mine"): "is not empty and is not a dsc export",
        str(tmp_path / "notes.txt"): "is a file, and a dsc export is a folder",
    }
    before = tree(tmp_path)
    for target, message in cases.items():
        code, out, err = cli("export", str(package), "--to", "axolotl", "-o", target, cwd=tmp_path)
        assert code == 2 and out == "" and "Traceback" not in err, err
        assert err.splitlines() == ["dsc export: error:", err.splitlines()[1]] and message in err
        assert err.splitlines()[1].startswith(f"  {Path(target).resolve()}: ")
        assert tree(tmp_path) == before
    for _ in range(2):  # an export dsc wrote is replaced by the next one
        assert cli("export", str(package), "--to", "axolotl", cwd=tmp_path)[0] == 0
    marker = json.loads((tmp_path / "adgen-axolotl" / "dsc-export.json").read_text())
    assert marker["format"] == "dsc-export/1" and marker["to"] == "axolotl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adgen", "adgen-axolotl", "mine", "notes.txt"]


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_reclaim_puts_back_or_keeps_what_it_cannot_prove_is_its_own(tmp_path: Path, packages) -> None:
    """Older dsc moved a target *file* aside as .<name>.old-PID-...: it is put back when the name is free, and never
    deleted; a moved-aside package is removed once a new package stands in its place."""
    from dsc.builders.package import reclaim

    pid = _dead_pid()
    aside = tmp_path / f".notes.txt.old-{pid}-abcd1234"
    aside.write_text("my notes\n", encoding="utf-8")
    reclaim(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "my notes\n" and not aside.exists()

    target = tmp_path / "pkg"
    shutil.copytree(packages("adgen"), target)
    user_file = tmp_path / f".pkg.old-{pid}-ffff0000"
    user_file.write_text("not a package\n", encoding="utf-8")
    old_package = tmp_path / f".pkg.old-{pid}-eeee0000"
    shutil.copytree(packages("adgen"), old_package)
    reclaim(target)
    assert user_file.read_text() == "not a package\n" and not old_package.exists()


def test_a_failed_swap_puts_the_old_package_back(tmp_path: Path, packages) -> None:
    """If the new folder cannot be renamed into place, the package moved aside returns (fault injected at the rename)."""
    from dsc.builders import package as package_module

    target = tmp_path / "pkg"
    shutil.copytree(packages("adgen"), target)
    before = tree(tmp_path)
    real_rename = os.rename

    def failing_rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if ".tmp-" in str(src):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    package_module.os.rename = failing_rename
    try:
        with pytest.raises(OSError, match="No space left"), package_module.staging(target) as stage:
            (stage / "manifest.json").write_text("{}", encoding="utf-8")
    finally:
        package_module.os.rename = real_rename
    assert tree(tmp_path) == before


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hub_env(endpoint: str, home: Path) -> dict[str, str]:
    return loopback_env(endpoint, home, TOKEN, HF_HUB_DISABLE_XET="1", DSC_HUB_TIMEOUT="1")


@pytest.mark.parametrize("stall", [r"^/api/whoami-v2$", r"^/api/datasets/alice/adgen"])
def test_publish_to_a_hub_that_never_answers_fails_in_one_line(stall: str, packages, tmp_path: Path) -> None:
    package = tmp_path / "adgen"
    shutil.copytree(packages("adgen"), package)
    before = tree(package)
    with LoopbackHub() as hub:
        hub.add_user("alice", TOKEN)
        hub.stall = re.compile(stall)
        result = run_dsc("publish", str(package), "--repo", "alice/adgen", env=_hub_env(hub.url, tmp_path))
        stalled = [r for r in hub.requests if r[2] == 0]
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("dsc publish: publish failed: the Hub at http://127.0.0.1:")
    assert "did not answer within 1 s" in lines[0] and "DSC_HUB_TIMEOUT" in lines[0] and TOKEN not in lines[0]
    assert stalled and all(re.search(stall, path) for _, path, _ in stalled)
    assert tree(package) == before


LOAD = """
import sys
import dsc
from dsc.compiler.errors import DscError
try:
    dsc.load(sys.argv[1])
except DscError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.parametrize(
    ("hub", "message"),
    [
        ("hanging", "did not answer within 1 s while reading the repo's info"),
        ("down", "cannot reach the Hub at http://127.0.0.1:"),
    ],
)
def test_dsc_load_of_an_unreachable_hub_is_one_line(hub: str, message: str, tmp_path: Path) -> None:
    with LoopbackHub() as server:
        server.stall = re.compile(".")
        endpoint = server.url if hub == "hanging" else f"http://127.0.0.1:{_closed_port()}"
        result = subprocess.run(
            [sys.executable, "-c", LOAD, "alice/adgen"],
            env={**os.environ, "PYTHONPATH": str(REPO), **_hub_env(endpoint, tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alice/adgen: ") and message in lines[0], result.stdout
