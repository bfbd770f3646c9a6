"""Shared fixtures: the repo's paths, a CLI runner, and packages built once per session from the built-in formats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORMATS = REPO / "formats"
DATA = FORMATS / "data"


def run_dsc(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (`python -m dsc`), the way a user's shell would."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dsc", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory):
    """Build a built-in format once per session: `packages("alpaca")` -> the package folder."""
    import dsc

    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("packages")

    def get(name: str) -> Path:
        if name not in built:
            built[name] = dsc.build(FORMATS / f"{name}.yaml", output=root / name).path
        return built[name]

    return get
