"""The README is executable: every bash and python block runs as written, and every spec key it shows exists.

A block that cannot run here says why in an HTML comment on the line before its fence (`<!-- readme: skip <why> -->`),
so what is not run is visible to anyone reading the README's source. Blocks run in a scratch folder holding copies of
formats/, templates/ and the loopback test servers: bash blocks with `dsc` (forked from the warm CLI server,
tests/cli_server.py) and the installed `python` first on PATH, python blocks in the test's own process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, warm_cli_env
from dsc.compiler.spec import spec_schema

SKIP = re.compile(r"<!--\s*readme:\s*skip\s+(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    skip: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, with the skip reason written above it (if any)."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened and opened.group(1):
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            reason = SKIP.search(above)
            out.append(Block(i + 1, opened.group(1), "\n".join(lines[i + 1 : j]) + "\n", reason.group(1) if reason else None))
            i = j
        i += 1
    return out


BLOCKS = readme_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang in ("bash", "python")]


def _env() -> dict[str, str]:
    """The installed `python` first on PATH, and before it `dsc` forked from the warm CLI server (conftest)."""
    bindir = str(Path(sys.executable).parent)
    warm = warm_cli_env()
    path = os.pathsep.join([warm.pop("PATH").split(os.pathsep, 1)[0], bindir, os.environ["PATH"]])
    return {**os.environ, **warm, "PATH": path, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def scratch(tmp: Path) -> Path:
    """A folder laid out like a checkout for the README's relative paths (formats/, templates/, tests/*_server.py)."""
    for name in ("formats", "templates"):
        shutil.copytree(REPO / name, tmp / name)
    (tmp / "tests").mkdir()
    for server in (REPO / "tests").glob("*_server.py"):
        shutil.copy(server, tmp / "tests" / server.name)
    return tmp


@pytest.fixture(scope="session")
def quick_start(packages) -> Path:
    """build/adgen as the quick start's command (`dsc build formats/adgen.yaml`) makes it, which later examples use:
    the session's adgen package (conftest's `packages`, the same spec and data; a package does not depend on where it
    was built, test_reproducible.py checks that), copied into each block's scratch folder."""
    return packages("adgen")


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_readme_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bash block runs in bash; a python block runs in this process (fresh globals, the scratch folder as working
    directory, offline), which spares it the Python start-up and the torch/transformers imports a worker already has."""
    if block.skip:
        pytest.skip(block.skip)  # before the quick start's package is built: a skipped block needs none
    work = scratch(tmp_path)
    shutil.copytree(request.getfixturevalue("quick_start"), work / "build" / "adgen")
    if block.lang == "python":
        import huggingface_hub.constants

        monkeypatch.chdir(work)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, when it was imported
        exec(compile(block.text, str(block), "exec"), {"__name__": "__main__"})
        return
    command = ["bash", "-euo", "pipefail", "-c", block.text]
    # Output to files, not pipes: a background job the block left running (a server started before a command failed)
    # would hold a pipe open and keep the test waiting; it is killed with the block's process group instead.
    with (tmp_path / "stdout").open("w+") as out, (tmp_path / "stderr").open("w+") as err:
        block_run = subprocess.Popen(command, cwd=work, env=_env(), stdout=out, stderr=err, start_new_session=True)
        try:
            block_run.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(block_run.pid, signal.SIGKILL)
            block_run.wait()
        out.seek(0)
        err.seek(0)
        run = subprocess.CompletedProcess(command, block_run.returncode, out.read(), err.read())
    assert run.returncode == 0, f"{block} failed:\n{block.text}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, f"{block}:\n{run.stderr[-3000:]}"


DEPTH = 6
"""How deep the schema walk goes (the spec's keys nest four deep: fields.history.items.items)."""


def _schema_paths(schema: dict, root: dict, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key path the spec schema allows (following $ref, oneOf/anyOf alternatives and additionalProperties)."""
    paths: set[tuple[str, ...]] = set()
    if not isinstance(schema, dict):
        return paths
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []) + schema.get("allOf", []):
        paths |= _schema_paths(alternative, root, prefix)
    for key, sub in schema.get("properties", {}).items():
        paths.add((*prefix, key))
        if len(prefix) < DEPTH:
            paths |= _schema_paths(sub, root, (*prefix, key))
    for free in [schema.get("additionalProperties"), *schema.get("patternProperties", {}).values()]:
        if isinstance(free, dict) and len(prefix) < DEPTH:
            paths.add((*prefix, "*"))
            paths |= _schema_paths(free, root, (*prefix, "*"))
    if isinstance(schema.get("items"), dict):
        paths |= _schema_paths(schema["items"], root, prefix)
    return paths


def _yaml_paths(data: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            paths.add((*prefix, str(key)))
            paths |= _yaml_paths(value, (*prefix, str(key)))
    elif isinstance(data, list):
        for item in data:
            paths |= _yaml_paths(item, prefix)
    return paths


def _allowed(path: tuple[str, ...], allowed: set[tuple[str, ...]]) -> bool:
    """A path is allowed when the schema has it, a free-form mapping (`*`) standing in for user-named keys."""
    return any(len(a) == len(path) and all(x in (y, "*") for x, y in zip(a, path, strict=True)) for a in allowed)


def _is_spec_block(block: Block) -> bool:
    """A YAML block whose top-level keys are format-spec keys (a spec, or a section of one such as `dedup:`)."""
    data = yaml.safe_load(block.text)
    return isinstance(data, dict) and bool(data) and set(data) <= set(spec_schema()["properties"])


SPEC_BLOCKS = [b for b in BLOCKS if b.lang == "yaml" and not b.skip and _is_spec_block(b)]


@pytest.mark.parametrize("block", SPEC_BLOCKS, ids=str)
def test_readme_spec_keys_exist(block: Block) -> None:
    """Every key a spec example in the README shows is a key the spec schema accepts (docs that disagree are bugs)."""
    schema = spec_schema()
    allowed = _schema_paths(schema, schema)
    shown = _yaml_paths(yaml.safe_load(block.text))
    unknown = sorted(".".join(p) for p in shown if not _allowed(p, allowed))
    assert not unknown, f"{block}: keys the spec schema does not know: {unknown}"


def test_readme_has_runnable_blocks() -> None:
    """The parser found the README's blocks (guards against a fence change silently skipping everything)."""
    assert len([b for b in RUNNABLE if not b.skip]) >= 5 and SPEC_BLOCKS
