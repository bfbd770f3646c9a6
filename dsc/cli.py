"""The command line: `dsc build | validate | preview | formats`.

The only place that prints. Exit codes: 0 success, 1 records failed, 2 usage or spec error. A user's mistake is one
or more located lines on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


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
    b.add_argument("--num-proc", type=_positive, metavar="N", help="worker processes for the passes (default 1)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    v = spec_command("validate", "check the spec and every record; write nothing")
    v.add_argument("--num-proc", type=_positive, metavar="N", help="worker processes for the passes")
    v.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    p = spec_command("preview", "show rendered records and their tokens, masked ones marked")
    p.add_argument("-n", type=_positive, default=3, metavar="N", help="records to show (default 3)")
    p.add_argument("--tokenizer", metavar="NAME", help="qwen3, a local tokenizer folder, or a Hub id")

    sub.add_parser("formats", help="list the built-in formats", description="list the built-in formats")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "output", None):
        out["output"] = args.output
    if getattr(args, "tokenizer", None):
        out["tokenizer"] = args.tokenizer
    return out


def _progress(quiet: bool) -> None:
    import datasets

    if quiet or not sys.stderr.isatty() and quiet:
        datasets.disable_progress_bars()


def _cmd_formats(_: argparse.Namespace) -> int:
    from compiler import resources
    from compiler.yaml_lines import load_yaml_with_lines

    for path in resources.builtin_formats():
        data, _lines = load_yaml_with_lines(path.read_text(encoding="utf-8"), str(path))
        print(f"{data.get('name', path.stem):<20} {data.get('description', '')}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from compiler.pipeline import Options, render
    from compiler.spec import load_spec

    spec = load_spec(args.spec)
    _progress(args.quiet)
    rendered = render(spec, Options(limit=args.limit, num_proc=args.num_proc))
    bad = sum(rendered.invalid.values())
    print(f"{spec.path.name}: spec ok; {rendered.read} records read, {len(rendered.dataset)} valid, {bad} invalid")
    for reason, n in sorted(rendered.invalid.items()):
        print(f"  {reason}: {n} (skipped: on_invalid is skip)")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from builders.launcher import write_launcher
    from builders.package import write_package
    from compiler.pipeline import Options, compile_spec
    from compiler.spec import load_spec

    spec = load_spec(args.spec, _overrides(args))
    _progress(args.quiet)
    compiled = compile_spec(spec, Options(limit=args.limit, num_proc=args.num_proc))
    package = write_package(compiled, spec.output, extra=[write_launcher])
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
    return 0


def _show_token(text: str) -> str:
    return text.replace("\n", "↵").replace("\t", "→")


def _cmd_preview(args: argparse.Namespace) -> int:
    from compiler.encode import IGNORE
    from compiler.pipeline import Options, render, tokenize
    from compiler.spec import load_spec
    from compiler.tokenizer import load_tokenizer

    spec = load_spec(args.spec, _overrides(args))
    import datasets

    datasets.disable_progress_bars()
    rendered = render(spec, Options(limit=args.n))
    tok = load_tokenizer(spec.tokenizer, spec)
    compiled = tokenize(spec, rendered, tok, Options())
    rows = [row for split in compiled.splits.values() for row in split]
    rows.sort(key=lambda r: int(r["source_id"].rsplit("#", 1)[1]))
    print(f"{spec.name}: {len(rows)} record(s); tokenizer {tok.name}; [masked] tokens have label -100")
    for row in rows[: args.n]:
        ids, labels = row["input_ids"], row["labels"]
        masked = sum(1 for x in labels if x == IGNORE)
        print(f"\n── {row['source_id']} " + "─" * 40)
        print("prompt:\n" + row["prompt"])
        print("response:\n" + row["response"])
        shown = []
        for token, label in zip(ids, labels, strict=True):
            text = _show_token(tok.backend.decode([token], skip_special_tokens=False))
            shown.append(f"[{text}]" if label == IGNORE else text)
        print(f"tokens: {len(ids)} ({masked} masked, {len(ids) - masked} trained)")
        print("|".join(shown))
    return 0


COMMANDS = {"build": _cmd_build, "validate": _cmd_validate, "preview": _cmd_preview, "formats": _cmd_formats}


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
    from compiler.errors import DscError

    try:
        return COMMANDS[args.command](args)
    except DscError as exc:
        label = "spec error" if exc.exit_code == 2 else "error"
        print(f"dsc {args.command}: {label}:", file=sys.stderr)
        for line in exc.render().splitlines():
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"dsc {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"dsc {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
