"""The Python face of dsc: what the CLI does, callable from a script or a trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsc.builders.launcher import write_launcher
from dsc.builders.package import ExtraWriter, Package, write_package
from dsc.builders.report import write_report
from dsc.compiler.pipeline import Options, compile_spec
from dsc.compiler.spec import load_spec

PACKAGE_EXTRAS: list[ExtraWriter] = [write_launcher, write_report]
"""What every built package carries besides data, card and manifest: the training launcher and the report."""


def build(
    spec_path: str | Path,
    *,
    output: str | Path | None = None,
    limit: int | None = None,
    num_proc: int | None = None,
    **overrides: Any,
) -> Package:
    """Build the package a format spec describes (with its training launcher and report) and return where it went and its manifest.

    `overrides` replace top-level spec keys (e.g. `tokenizer="path/to/tok"`, `lengths={"max_length": 256}`).
    Raises `dsc.compiler.errors.SpecError` or `RecordError` (each lists located problems) when the build cannot be made.
    """
    if output is not None:
        overrides["output"] = str(output)
    spec = load_spec(spec_path, overrides)
    compiled = compile_spec(spec, Options(limit=limit, num_proc=num_proc))
    return write_package(compiled, spec.output, extra=PACKAGE_EXTRAS)
