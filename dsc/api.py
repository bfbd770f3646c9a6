"""The Python face of dsc: what the CLI does, callable from a script or a trainer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dsc.builders.launcher import write_launcher
from dsc.builders.outputs import check_package_output
from dsc.builders.package import ExtraWriter, Package, write_package
from dsc.builders.report import write_report
from dsc.compiler.pipeline import Compiled, Options, compile_spec
from dsc.compiler.spec import Spec, load_spec

PACKAGE_EXTRAS: list[ExtraWriter] = [write_launcher, write_report]
"""What every built package carries besides data, card and manifest: the training launcher and the report."""


def build(
    spec_path: str | Path,
    *,
    output: str | Path | None = None,
    limit: int | None = None,
    num_proc: int | None = None,
    engine: str = "local",
    **overrides: Any,
) -> Package:
    """Build the package a format spec describes (with its training launcher and report) and return where it went and its manifest.

    `num_proc` worker processes (None: every core), `engine` where the passes run (`local` or `ray`).
    `overrides` replace top-level spec keys (e.g. `tokenizer="path/to/tok"`, `lengths={"max_length": 256}`).
    Raises `dsc.compiler.errors.SpecError` or `RecordError` (each lists located problems) when the build cannot be made,
    `dsc.builders.outputs.OutputError` (before any work) when the output folder is not dsc's to replace.
    """
    if output is not None:
        overrides["output"] = str(output)
    spec = load_spec(spec_path, overrides)
    return compile_and_write(spec, Options(limit=limit, num_proc=num_proc, engine=engine))[0]


def compile_and_write(spec: Spec, options: Options) -> tuple[Package, Compiled]:
    """The build of a loaded spec, as `dsc build` and `build` run it: the output folder checked before any work (a
    folder dsc may not replace fails at once), then compile, then the package with its extras, written atomically;
    the build's temporary workspace is removed before it returns (the Compiled keeps its counts, not its spills)."""
    check_package_output(spec)
    compiled = compile_spec(spec, options)
    start = time.perf_counter()
    try:
        package = write_package(compiled, spec.output, extra=PACKAGE_EXTRAS)
    finally:
        compiled.close()  # the spills are in the package now; counts and timings stay for the caller
    compiled.timings["write (shards, card, report, launcher)"] = time.perf_counter() - start
    return package, compiled
