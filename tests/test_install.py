"""After a non-editable install (a wheel), the built-in formats, their data, templates and launcher files still work."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "-q"], check=True, capture_output=True, timeout=600)


def test_wheel_builds_builtin_formats_outside_the_repo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # The build backend from the test extra, not a fresh isolated environment (its setup is most of the build's time;
    # `pip install -e .` builds with [build-system]'s requirements in isolation already).
    pip("wheel", "--no-build-isolation", "-w", str(wheels), str(REPO))
    wheel = next(wheels.glob("dsc-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dsc/_data/formats/alpaca.yaml" in names and "dsc/_data/templates/alpaca_prompt.j2" in names
    assert "dsc/_data/formats/data/adgen_dev.jsonl" in names
    target = tmp_path / "site"
    pip("install", "--target", str(target), str(wheel))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-m", "dsc", "build", "formats/adgen.yaml", "--limit", "30", "-q"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import dsc.compiler; print(dsc.compiler.__file__)"], cwd=work, env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(target))  # the wheel's code ran, not the checkout's
    installed = sorted(p.name for p in target.iterdir() if p.name not in ("bin", "__pycache__") and not p.name.endswith(".dist-info"))
    assert installed == ["dsc"]  # one import root: no generic top-level names such as compiler or builders
    assert "dsc/compiler/spec.py" in names and "dsc/builders/package.py" in names
    package = work / "build" / "adgen"
    assert (package / "data" / "train-00000-of-00001.parquet").is_file() and (package / "train.py").is_file()
