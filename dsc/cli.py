"""The command line: `dsc build | validate | preview | formats | publish | export | generate | report | diff`.

The only place that prints. Exit codes: 0 success, 1 records failed, 2 usage or spec error. A user's mistake is one
or more located lines on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsc", description="The dataset compiler for LLM fine-tuning.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def spec_command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("spec", help="a format spec (formats/alpaca.yaml) or a built-in format's name (alpaca)")
        p.add_argument("--limit", type=_positive, metavar="N", help="read only the first N records")
        return p

    b = spec_command("build", "compile a format spec into a dataset package")
    b.add_argument("--output", "-o", metavar="DIR", help="package folder (default: the spec's output, or build/<name>)")
    b.add_argument("--tokenizer", metavar="NAME", help="qwen3, a local tokenizer folder, or a Hub id")
    b.add_argument("--num-proc", type=_positive, metavar="N", help="worker processes for the passes (default: every core)")
    b.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the passes run: local (this machine) or ray (a Ray cluster; pip install 'dsc[ray]')")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    b.add_argument("--push", metavar="REPO", help="then publish the package to this Hub dataset repo (user/name)")
    b.add_argument("--private", action="store_true", help="with --push: create the repo private")

    v = spec_command("validate", "check the spec, every record and (with a tokenizer at hand) their lengths; write no package")
    v.add_argument("--num-proc", type=_positive, metavar="N", help="worker processes for the passes (default: every core)")
    v.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    v.add_argument("--audit", metavar="FILE", help="write every invalid, dropped or truncated record to FILE (audit.jsonl lines)")
    v.add_argument("--no-lengths", action="store_true", help="skip the length check (no tokenizer is loaded)")

    p = spec_command("preview", "show rendered records and their tokens, masked ones marked")
    p.add_argument("-n", type=_positive, default=3, metavar="N", help="records to show (default 3)")
    p.add_argument("--tokenizer", metavar="NAME", help="qwen3, a local tokenizer folder, or a Hub id")
    p.add_argument("--duplicates", type=_positive, metavar="N", help="instead, show N dedup clusters side by side")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="trained tokens green, masked ones dim (auto: on a terminal, unless NO_COLOR is set)")

    sub.add_parser("formats", help="list the built-in formats", description="list the built-in formats")

    pub = sub.add_parser("publish", help="upload a package to a Hugging Face Hub dataset repo, in one commit",
                         description="upload a package to a Hugging Face Hub dataset repo, in one commit; the token "
                         "comes from HF_TOKEN or `hf auth login`, the Hub from HF_ENDPOINT")
    pub.add_argument("package", help="a package folder (build/<name>)")
    pub.add_argument("--repo", required=True, metavar="REPO", help="the dataset repo, user/name (or name: your own)")
    pub.add_argument("--private", action="store_true", help="create the repo private (refused if it exists public)")
    pub.add_argument("--revision", metavar="BRANCH", help="the branch to commit to (default main; created if new)")
    pub.add_argument("--message", metavar="TEXT", help="the commit message (default: package name and fingerprint)")

    exp = sub.add_parser("export", help="write what LLaMA-Factory or Axolotl needs to train on a package",
                         description="write what LLaMA-Factory or Axolotl needs to train on a package, and the config "
                         "lines to paste")
    exp.add_argument("package", help="a package folder (build/<name>)")
    exp.add_argument("--to", required=True, choices=["llamafactory", "axolotl"], help="the trainer")
    exp.add_argument("--output", "-o", metavar="DIR", help="where to write (default <package>-<trainer> beside the package)")

    gen = sub.add_parser("generate", help="write new instruction data with an LLM (self-instruct), from a generate spec",
                         description="write new instruction data with an LLM (Stanford Alpaca's self-instruct) against an "
                         "OpenAI-compatible endpoint; appends as it goes and resumes where a killed run stopped")
    gen.add_argument("spec", help="a generate spec (formats/generate/alpaca.yaml) or a built-in one's name (alpaca)")
    gen.add_argument("--num", "-n", type=_positive, metavar="N", help="records the output should hold (num_instructions)")
    gen.add_argument("--output", "-o", metavar="FILE", help="the JSON lines file to write (default: the spec's output)")
    gen.add_argument("--model", metavar="NAME", help="the model to ask (default: the spec's model)")
    gen.add_argument("--base-url", metavar="URL", help="the endpoint, e.g. http://127.0.0.1:8000/v1 (default: the spec's)")
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    rep = sub.add_parser("report", help="write a package's report.html (and report/*.svg) again from the package",
                         description="write a package's report.html (and report/*.svg) again from the package alone")
    rep.add_argument("package", help="a package folder (build/<name>)")
    rep.add_argument("--open", action="store_true", help="then open the report in a web browser")

    dif = sub.add_parser("diff", help="compare two packages: records added, removed and changed, tokens, and why",
                         description="compare two packages: records added, removed and changed (by source_id and a hash "
                         "of input_ids and labels), token totals and lengths, and the spec, input and tokenizer changes "
                         "that explain them")
    dif.add_argument("old", help="the older package folder")
    dif.add_argument("new", help="the newer package folder")
    dif.add_argument("--html", metavar="FILE", help="also write the comparison as a self-contained HTML page")
    dif.add_argument("-n", type=_positive, default=10, metavar="N", help="source ids listed per change (default 10)")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# Where each override comes from: a problem with an overridden key names the option, not the spec's line.
OVERRIDE_ORIGINS = {"output": "--output", "tokenizer": "--tokenizer"}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "output", None):
        out["output"] = args.output
    if getattr(args, "tokenizer", None):
        out["tokenizer"] = args.tokenizer
    return out


def _progress(quiet: bool) -> None:
    """Progress bars on long steps, only on a terminal and not with --quiet: redrawn bars in a CI log or a piped file are
    noise (dsc's own bars follow datasets' switch)."""
    if quiet or not sys.stderr.isatty():
        from dsc.compiler.engine.progress import disable_bars

        disable_bars()


def _cmd_formats(_: argparse.Namespace) -> int:
    from dsc.compiler import resources
    from dsc.compiler.yaml_lines import load_yaml_with_lines

    for path in resources.builtin_formats():
        data, _lines = load_yaml_with_lines(path.read_text(encoding="utf-8"), str(path))
        print(f"{data.get('name', path.stem):<20} {data.get('description', '')}")
    return 0


SHOWN_RECORDS = 5
"""Invalid records `dsc validate` lists by location before it counts the rest."""


def _cmd_validate(args: argparse.Namespace) -> int:
    import json

    from dsc.compiler.errors import DscError
    from dsc.compiler.spec import load_spec
    from dsc.compiler.tokenizer import is_hub_id, load_tokenizer

    spec = load_spec(args.spec)  # before the pipeline's imports: a bad spec fails in a fraction of a second
    from dsc.compiler.audit import records
    from dsc.compiler.pipeline import Options, render, tokenize

    _progress(args.quiet)
    options = Options(limit=args.limit, num_proc=args.num_proc)
    with render(spec, options) as rendered:
        valid, bad = len(rendered), sum(rendered.invalid.values())
        print(f"{spec.path.name}: spec ok; {rendered.read} records read, {valid} valid, {bad} invalid")
        for reason, n in sorted(rendered.invalid.items()):
            print(f"  {reason}: {n} (skipped: on_invalid is skip)")
        for line in itertools.islice(records(rendered.audit, Path.cwd()), SHOWN_RECORDS):
            where = f"{line['file']}:{line['line']}" if line["line"] is not None else line["source_id"]
            print(f"    {where}: {line['reason']}  {json.dumps(line['detail'], ensure_ascii=False)}")
        if bad > SHOWN_RECORDS:
            print(f"    ... and {bad - SHOWN_RECORDS} more" + ("" if args.audit else " (--audit FILE lists them all)"))
        trail = rendered.audit
        tspec = spec.tokenizer
        if args.no_lengths:
            print("  lengths: not checked (--no-lengths)")
        else:
            try:
                tok = load_tokenizer(tspec, spec, offline=True)
            except DscError:
                if not is_hub_id(tspec):
                    raise
                print(f"  lengths: not checked (tokenizer '{tspec.name}' is not in the local Hub cache; dsc build fetches it)")
            else:
                compiled = tokenize(spec, rendered, tok, options)
                c = compiled.counts
                fit = sum(c["kept"].values()) - c["truncated"]
                print(f"  lengths ({tok.name}): {fit} fit, {c['truncated']} truncated, {sum(c['dropped'].values())} dropped")
                for reason, n in sorted(c["dropped"].items()):
                    print(f"    {reason}: {n}")
                trail = compiled.audit
        if args.audit:
            from dsc.builders.audit import write_audit_file

            write_audit_file(Path(args.audit), records(trail, spec.path.parent))
            print(f"  wrote {args.audit} ({len(trail)} record(s))")
        return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from dsc.compiler.spec import load_spec

    spec = load_spec(args.spec, _overrides(args), OVERRIDE_ORIGINS)  # before the build's imports: a bad spec fails fast
    from dsc.api import compile_and_write
    from dsc.compiler.pipeline import Options

    _progress(args.quiet)
    package, compiled = compile_and_write(spec, Options(limit=args.limit, num_proc=args.num_proc, engine=args.engine))
    c = compiled.counts
    total = compiled.tokens["total"]
    kept = ", ".join(f"{name} {n}" for name, n in c["kept"].items())
    print(
        f"dsc build {spec.name}: {c['read']} read, {sum(c['invalid'].values())} invalid, "
        f"{sum(c['dropped'].values())} dropped, {c['truncated']} truncated, {c['boundary_drift']} boundary drift"
    )
    for reason, n in sorted({**c["invalid"], **c["dropped"]}.items()):
        print(f"  {reason}: {n}")
    print(f"  kept: {kept}; {total['tokens']} tokens, {total['trainable_share']:.1%} trainable")
    print(f"  wrote {package.path}")
    print("  time: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in compiled.timings.items()))
    audited = package.manifest["audit"]["records"]
    print(f"  audit: {package.path / 'audit.jsonl'} ({audited} record(s) not kept as they came)")
    if args.push:
        return _publish(package.path, args.push, private=args.private, command="build")
    return 0


def _publish(package: Path, repo: str, *, private: bool, command: str, revision: str | None = None,
             message: str | None = None) -> int:
    from huggingface_hub.utils import disable_progress_bars, logging

    from dsc.builders.hub import publish
    from dsc.compiler.errors import DscError

    logging.set_verbosity_error()  # dsc says itself whether a commit was made
    if not sys.stderr.isatty():
        disable_progress_bars()
    try:
        done = publish(package, repo, private=private, revision=revision, message=message)
    except DscError as exc:
        print(f"dsc {command}: publish failed: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    privacy = "private" if done.private else "public"
    if done.changed:
        where = f"({privacy}, {done.revision}, commit {done.commit[:12]})"
        print(f"dsc {command}: published {package} to {done.url} {where}")
    else:
        print(f"dsc {command}: {done.repo_id}@{done.revision} already holds this package: no new commit "
              f"({privacy}, commit {done.commit[:12]})")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    return _publish(Path(args.package), args.repo, private=args.private, command="publish", revision=args.revision,
                    message=args.message)


def _cmd_export(args: argparse.Namespace) -> int:
    from dsc.builders.export import export
    from dsc.compiler.engine.progress import disable_bars

    disable_bars()
    written = export(Path(args.package), args.to, Path(args.output) if args.output else None)
    print(f"dsc export: wrote {written.folder} for {args.to}; paste into your {args.to} config:")
    print(written.snippet, end="")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from dsc.compiler.generate.run import generate
    from dsc.compiler.generate.spec import load_generate_spec

    given = {"num_instructions": args.num, "output": args.output, "model": args.model, "base_url": args.base_url}
    spec = load_generate_spec(args.spec, {k: v for k, v in given.items() if v is not None})
    try:
        done = generate(spec, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"dsc generate: interrupted; {spec.output} keeps every finished record: run the same command to resume", file=sys.stderr)
        return 130
    earlier = f" ({done.resumed} from an earlier run)" if done.resumed else ""
    print(f"dsc generate {spec.name}: {done.kept} of {done.target} records in {done.output}{earlier}")
    print(f"  requests: {done.sent} sent, {done.failed} failed, {done.reused} reused from the journal; {done.calls} HTTP calls")
    print(f"  dropped: {sum(done.dropped.values())}")
    for reason, n in sorted(done.dropped.items()):
        print(f"    {reason}: {n}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dsc.builders.report import regenerate

    path = regenerate(args.package)
    print(f"dsc report: wrote {path}")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print(f"dsc report: no browser to open; open {path} yourself", file=sys.stderr)
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from dsc.builders.diff import diff_html, diff_packages, diff_text
    from dsc.builders.html import write_page

    diff = diff_packages(args.old, args.new)
    print(diff_text(diff, shown=args.n), end="")
    if args.html:
        write_page(Path(args.html), diff_html(diff, shown=max(args.n, 500)))
        print(f"dsc diff: wrote {args.html}")
    return 0


def _show_token(text: str) -> str:
    return text.replace("\n", "↵").replace("\t", "→")


TRAINED, MASKED, RESET = "\x1b[32m", "\x1b[2m", "\x1b[0m"


def _use_color(choice: str) -> bool:
    """--color always/never, or auto: on a terminal that is not dumb, unless NO_COLOR is set (no-color.org)."""
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _token_rows(tokens: list[tuple[str, bool]], width: int, color: bool) -> list[str]:
    """(text, masked) tokens as rows of at most `width` cells, `|` between tokens; a row also ends after a newline,
    so the rendered text's lines (a conversation's turns) stay visible. Masked tokens are dim with colour, else [bracketed]."""
    rows: list[str] = []
    row, used = "", 0
    for text, masked in tokens:
        shown = _show_token(text)
        for piece in _wrap(shown, width - 2) if shown else [""]:
            plain = f"[{piece}]" if masked and not color else piece
            cells = sum(map(_cells, plain))
            if used and used + 1 + cells > width:
                rows.append(row)
                row, used = "", 0
            styled = f"{MASKED if masked else TRAINED}{plain}{RESET}" if color else plain
            row, used = (f"{row}|{styled}", used + 1 + cells) if used else (styled, cells)
        if text.endswith("\n"):
            rows.append(row)
            row, used = "", 0
    return [*rows, row] if used else rows


def _cells(ch: str) -> int:
    import unicodedata

    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _wrap(text: str, width: int) -> list[str]:
    """Hard-wrap each line to `width` terminal cells (a CJK character takes two)."""
    out = []
    for line in text.splitlines() or [""]:
        row, used = "", 0
        for ch in line:
            if used + _cells(ch) > width:
                out.append(row)
                row, used = "", 0
            row, used = row + ch, used + _cells(ch)
        out.append(row)
    return out


def _side_by_side(left: str, right: str, width: int = 58) -> str:
    a, b = _wrap(left, width), _wrap(right, width)
    rows = max(len(a), len(b))
    a, b = a + [""] * (rows - len(a)), b + [""] * (rows - len(b))
    return "\n".join(x + " " * (width - sum(map(_cells, x))) + " │ " + y for x, y in zip(a, b, strict=True))


def _preview_duplicates(args: argparse.Namespace) -> int:
    """The first clusters dedup finds: the kept record's compared text beside each dropped one's."""
    from dsc.compiler.errors import Problem, SpecError
    from dsc.compiler.spec import load_spec

    spec = load_spec(args.spec, _overrides(args), OVERRIDE_ORIGINS)  # before the pipeline's imports: fails fast
    if spec.dedup is None:
        raise SpecError(Problem("the spec has no dedup: section, so there are no clusters to show", spec.where()))
    import numpy as np

    from dsc.compiler.dedup.passes import compared_texts, deduplicate
    from dsc.compiler.engine.progress import disable_bars
    from dsc.compiler.engine.spill import take
    from dsc.compiler.pipeline import Options, render

    disable_bars()
    with render(spec, Options(limit=args.limit), signatures=True) as rendered:
        dups = deduplicate(spec, rendered)
        table = rendered.spill.table()
        assert dups.records is not None
        lines = dups.records.table().to_pylist()
        clusters: dict[int, list[int]] = {}
        for i, kept in enumerate(dups.kept.tolist()):
            clusters.setdefault(kept, []).append(i)
        print(
            f"{spec.name}: {dups.records.rows} of {len(table)} record(s) dropped in {len(clusters)} cluster(s); "
            f"compared on {spec.dedup.label}"
        )
        for kept, members in list(clusters.items())[: args.duplicates]:
            rows = [kept, *(int(dups.dropped[i]) for i in members)]
            texts = compared_texts(take(table, np.array(rows)).to_pydict(), spec.dedup)
            first = lines[members[0]]
            print(f"\n── kept {first['kept_source_id']} " + "─" * 40)
            for n, i in enumerate(members, start=1):
                record = lines[i]
                print(f"dropped {record['source_id']}: {record['reason']}, similarity {record['similarity']:.2f}")
                print(_side_by_side(texts[0], texts[n]))
        return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    if args.duplicates:
        return _preview_duplicates(args)
    from dsc.compiler.spec import load_spec

    spec = load_spec(args.spec, _overrides(args), OVERRIDE_ORIGINS)  # before the pipeline's imports: fails fast
    from dsc.compiler.encode import IGNORE
    from dsc.compiler.engine.progress import disable_bars
    from dsc.compiler.pipeline import Options, render, tokenize
    from dsc.compiler.tokenizer import load_tokenizer

    disable_bars()
    with render(spec, Options(limit=args.n)) as rendered:
        tok = load_tokenizer(spec.tokenizer, spec)
        compiled = tokenize(spec, rendered, tok, Options())
        rows = [row for spill in compiled.spills.values() for row in spill.table().to_pylist()]
        rows.sort(key=lambda r: int(r["source_id"].rsplit("#", 1)[1]))
        color = _use_color(args.color)
        width = max(20, shutil.get_terminal_size((100, 24)).columns)
        legend = f"{TRAINED}trained{RESET} and {MASKED}masked{RESET} (label -100) tokens" if color else "[masked] tokens have label -100"
        print(f"{spec.name}: {len(rows)} record(s); tokenizer {tok.name}; {legend}")
        for row in rows[: args.n]:
            ids, labels = row["input_ids"], row["labels"]
            masked = sum(1 for x in labels if x == IGNORE)
            print(f"\n── {row['source_id']} " + "─" * 40)
            print("prompt:\n" + row["prompt"])
            print("response:\n" + row["response"])
            texts = [tok.backend.decode([token], skip_special_tokens=False) for token in ids]
            print(f"tokens: {len(ids)} ({masked} masked, {len(ids) - masked} trained)")
            print("\n".join(_token_rows(list(zip(texts, [label == IGNORE for label in labels], strict=True)), width, color)))
        return 0


COMMANDS = {
    "build": _cmd_build,
    "validate": _cmd_validate,
    "preview": _cmd_preview,
    "formats": _cmd_formats,
    "publish": _cmd_publish,
    "export": _cmd_export,
    "generate": _cmd_generate,
    "report": _cmd_report,
    "diff": _cmd_diff,
}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from dsc import __version__

        print(f"dsc {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    from dsc.compiler.errors import DscError, SpecError

    try:
        return COMMANDS[args.command](args)
    except DscError as exc:
        label = "spec error" if isinstance(exc, SpecError) else "error"
        print(f"dsc {args.command}: {label}:", file=sys.stderr)
        for line in exc.render().splitlines():
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"dsc {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dsc preview ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except OSError as exc:
        print(f"dsc {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except (RecursionError, MemoryError) as exc:  # the last resort: each pass reports these per record
        print(f"dsc {args.command}: input too large or nested too deeply ({type(exc).__name__}); nothing was written", file=sys.stderr)
        return 1


def command() -> NoReturn:
    """The `dsc` program: `main` on the command line, then exit with its code. Arrow readers a command left to the
    garbage collector may still own native threads; freed at interpreter teardown, after Arrow's own state, they abort
    the process ("terminate called without an active exception", exit 134, seen on a loaded machine after `dsc diff`
    had printed everything), so they are collected before the exit. Callers of `main` in a process that goes on skip
    that full collection (a quarter of a second once torch is imported)."""
    try:
        code = main()
    finally:
        gc.collect()
    raise SystemExit(code)


if __name__ == "__main__":
    command()
