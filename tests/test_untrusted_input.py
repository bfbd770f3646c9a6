"""Untrusted specs and records: nothing hangs, nothing leaks, every odd record is located.

Every case runs the real CLI with a 20 s subprocess timeout (a hang fails the test instead of blocking it) and checks
the exit code, that no traceback was printed, and that the message names the file, the line and the key or field.
Record hazards also build under `on_invalid: skip`: the package loads and each bad record is counted by its reason.
The hazards are generated here, into temporary folders.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import run_dsc

TIMEOUT = 20
GOOD = [
    {"instruction": "Say hi.", "output": "Hi."},
    {"instruction": "Count to two.", "output": "One, two."},
    {"instruction": "Name a colour.", "output": "Blue."},
]


def spec_text(*, prompt: str = '"{{ instruction }}"', fields: tuple[str, ...] = (), extra: tuple[str, ...] = (),
              sources: str = "[{path: data.jsonl}]", on_invalid: str = "error") -> str:
    """A small format spec; `fields` adds field lines, `extra` adds top-level lines at the end."""
    lines = [
        "name: hazard",
        f"sources: {sources}",
        "fields:",
        "  instruction: {type: string, required: true}",
        "  output: {type: string, required: true}",
        *(f"  {f}" for f in fields),
        f"on_invalid: {on_invalid}",
        "templates:",
        f"  prompt: {prompt}",
        '  response: "{{ output }}"',
        *extra,
    ]
    return "\n".join(lines) + "\n"


def line_with(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line of `text` that contains `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def write_jsonl(path: Path, records: list[dict | bytes]) -> Path:
    """JSON lines; a bytes item is written as the line itself (for text json.dumps cannot make)."""
    with path.open("wb") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, bytes) else json.dumps(rec).encode()) + b"\n")
    return path


def run(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`dsc ARGS` in `folder`, bounded in time; (exit code, stdout, stderr)."""
    start = time.monotonic()
    done = run_dsc(*args, cwd=folder, env=env, timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def fails(folder: Path, spec: str, code: int, *parts: str, command: str = "validate", env: dict[str, str] | None = None) -> str:
    """Write `spec` as s.yaml, run the command on it; assert the exit code and that stderr holds every part."""
    (folder / "s.yaml").write_text(spec, encoding="utf-8")
    rc, out, err = run(folder, command, "s.yaml", "-q", env=env)
    assert rc == code, out + err
    for part in parts:
        assert part in err, f"{part!r} not in:\n{err}"
    return out + err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project: specs/ holds the spec and three good records; a secret file sits beside specs/."""
    specs = tmp_path / "project" / "specs"
    specs.mkdir(parents=True)
    write_jsonl(specs / "data.jsonl", GOOD)
    (tmp_path / "project" / "secret.txt").write_text("TOP-SECRET\n", encoding="utf-8")
    return specs


# --- file exfiltration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_template_file_outside_the_template_folders_is_refused(folder: Path, how: str) -> None:
    secret = folder.parent / "secret.txt"
    name = {"dotdot": "../" * 30 + str(secret).lstrip("/"), "absolute": str(secret), "symlink": "evil.j2"}[how]
    if how == "symlink":
        (folder / "evil.j2").symlink_to(secret)
    spec = spec_text(prompt=f"{{file: '{name}'}}")
    where = f"s.yaml:{line_with(spec, 'prompt:')}: templates.prompt.file"
    output = fails(folder, spec, 2, where, "outside the folders", "DSC_TEMPLATE_PATH")
    assert "TOP-SECRET" not in output


def test_a_trusted_template_folder_is_an_opt_in(folder: Path, tmp_path: Path) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "shared.j2").write_text("Q: {{ instruction }}", encoding="utf-8")
    spec = spec_text(prompt=f"{{file: '{trusted / 'shared.j2'}'}}")
    fails(folder, spec, 2, "templates.prompt.file", "outside the folders")
    (folder / "s.yaml").write_text(spec, encoding="utf-8")
    other = tmp_path / "other"  # several trusted folders, os.pathsep-separated
    rc, out, err = run(folder, "validate", "s.yaml", "-q", env={"DSC_TEMPLATE_PATH": os.pathsep.join([str(other), str(trusted)])})
    assert rc == 0 and "3 valid" in out, out + err


@pytest.mark.parametrize(
    ("tag", "in_file"),
    [("{% include '../secret.txt' %}", False), ("{% import '../secret.txt' as s %}", True)],
)
def test_include_and_import_cannot_read_files(folder: Path, tag: str, in_file: bool) -> None:
    if in_file:
        (folder / "p.j2").write_text("{{ instruction }}\n" + tag + "\n", encoding="utf-8")
        spec = spec_text(prompt="{file: p.j2}")
        where = "p.j2:2: templates.prompt"
    else:
        spec = spec_text(prompt=json.dumps("{{ instruction }}" + tag))
        where = f"s.yaml:{line_with(spec, 'prompt:')}: templates.prompt"
    output = fails(folder, spec, 2, where, "templates cannot read other files")
    assert "TOP-SECRET" not in output


# --- hangs and memory blow-ups from a few bytes of spec ---------------------------------------------------------------


def test_yaml_alias_bomb_is_refused_in_seconds(folder: Path) -> None:
    rows = ['lol: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"l{i}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    spec = spec_text(extra=tuple(rows))
    assert len(spec) < 1500
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, 'l4:')}: l4: the YAML expands to more than 100,000 nodes")


def test_deeply_nested_yaml_is_a_spec_error(folder: Path) -> None:
    spec = spec_text(extra=("description: " + "[" * 100_000 + "]" * 100_000,))
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, 'description:')}: invalid YAML: nested deeper than 100 levels")


def test_duplicate_key_is_a_spec_error(folder: Path) -> None:
    spec = spec_text(extra=("name: other",))
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, 'name: other')}: name: duplicate key 'name' (first given at line 1)")


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("split: {validation: 1.0}", "split.validation", "1.0 would leave no training data"),
        ("split: {validation: -0.1}", "split.validation", "-0.1 is negative"),
        ("lengths: {max_length: 64, max_target_length: 64}", "lengths.max_target_length", "64 is not below max_length (64)"),
        ("lengths: {max_length: 100, max_source_length: 64, max_target_length: 64}", "lengths.max_length",
         "100 is less than max_source_length + max_target_length (64 + 64 = 128)"),
    ],
)
def test_contradictory_split_and_lengths_are_spec_errors(folder: Path, line: str, key: str, message: str) -> None:
    spec = spec_text(extra=(line,))
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, line)}: {key}: {message}")


def test_lipsum_is_gone(folder: Path) -> None:
    spec = spec_text(prompt='"{{ lipsum(n=200000) }}"')
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, 'prompt:')}: templates.prompt: undefined variable 'lipsum'")


def test_huge_constants_do_not_hang_the_spec_load(folder: Path) -> None:
    # Jinja folds constant expressions at compile time; in dsc's sandbox `**` and `*` are never folded.
    spec = spec_text(prompt='"{{ instruction }}{{ 2 ** (2 ** 40) }}{{ \'a\' * 10 ** 10 }}"')
    fails(folder, spec, 1, "data.jsonl:1: templates.prompt: 2 ** 1099511627776 is over the template limits")


def test_unknown_filter_is_a_spec_error(folder: Path) -> None:
    spec = spec_text(prompt='"{{ instruction | nosuch }}"')
    fails(folder, spec, 2, f"s.yaml:{line_with(spec, 'prompt:')}: templates.prompt", "No filter named 'nosuch'")


def test_undefined_name_in_a_template_file_has_its_line(folder: Path) -> None:
    (folder / "p.j2").write_text("Question:\n{{ instruction }}\n{{ instrucion }}\n", encoding="utf-8")
    fails(folder, spec_text(prompt="{file: p.j2}"), 2, "p.j2:3: templates.prompt: undefined variable 'instrucion'")


# --- records that hit a template limit: located, skippable, counted ---------------------------------------------------

HAZARD_TEMPLATE = """\
{%- macro f(n) %}{{ f(n + 1) }}{% endmacro %}
{%- set ns = namespace(x="ab") %}
{%- if kind == "power" %}{{ 2 ** (2 ** 40) }}
{%- elif kind == "repeat" %}{{ "a" * 10 ** 10 }}
{%- elif kind == "loops" %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}
{%- elif kind == "big_range" %}{{ range(10 ** 9) | list | length }}
{%- elif kind == "recursion" %}{{ f(0) }}
{%- elif kind == "output" %}{% for i in range(100000) %}{{ instruction }}{% endfor %}
{%- elif kind == "doubling" %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}
{%- elif kind == "width" %}{{ "{:>10000000000}".format(instruction) }}
{%- elif kind == "zero" %}{{ 1 // 0 }}
{%- else %}{{ instruction }} {{ 2 ** 10 }} {{ '%05d' % 3 }} {{ 'ab' * 3 }} {{ '{:>4}'.format(7) }} {{ range(3) | join }}
{{- instruction | center(12) }}{% endif %}
"""
ORDINARY = "Say hi. 1024 00003 ababab    7 012  Say hi.   "  # what the good records' prompts start with
TEMPLATE_HAZARDS = {
    "power": "2 ** 1099511627776 is over the template limits",
    "repeat": "a str repeated 10000000000 times",
    "loops": "per-record time limit",
    "big_range": "range() of 1,000,000,000 items",
    "recursion": "recursion too deep",
    "output": "rendered more than 1,000,000 characters",
    "doubling": "over the template limits",
    "width": "a format width is over the template limits",
    "zero": "division",
    # The regex engine's own timeout or the record's timer, whichever fires first under load: the same limit either way.
    "regex": "longer than 0.5 s (the per-record time limit, DSC_RECORD_SECONDS)",
}
FAST = {"DSC_RECORD_SECONDS": "0.5"}
"""A tighter per-record time limit than the default 2 s: the hazard runs stop their slow records in a quarter of the time."""


def _template_hazards(folder: Path) -> None:
    (folder / "hazards.j2").write_text(HAZARD_TEMPLATE, encoding="utf-8")
    records = [{"instruction": "x" * 100, "output": "y", "kind": k} for k in TEMPLATE_HAZARDS]
    records[-1]["instruction"] = "a" * 60 + "b"  # (a|aa)+$ backtracks for minutes on this
    write_jsonl(folder / "data.jsonl", [GOOD[0], *records, *GOOD[1:]])


HAZARD_SPEC = {"prompt": "{file: hazards.j2}", "fields": ('kind: {type: string, default: ""}',),
               "extra": ("derived:", "  tail: {from: instruction, regex: '(a|aa)+$', default: ''}")}


def test_template_limits_are_located_record_errors(folder: Path) -> None:
    _template_hazards(folder)
    start = time.monotonic()
    output = fails(folder, spec_text(**HAZARD_SPEC), 1, "10 record(s) failed validation or rendering", env=FAST)
    for line, (kind, message) in enumerate(TEMPLATE_HAZARDS.items(), start=2):
        where = f"data.jsonl:{line}: instruction: derived field 'tail': " if kind == "regex" else f"data.jsonl:{line}: templates.prompt: "
        assert f"{where}{message}" in output or (where in output and message in output), (kind, output)
    assert 0.5 <= time.monotonic() - start < 15  # the loops record ran its full 0.5 s, not a moment less


def test_template_limits_skip_and_count(folder: Path) -> None:
    _template_hazards(folder)
    manifest = _build_and_load(folder, spec_text(**HAZARD_SPEC, on_invalid="skip"), 3, env=FAST)
    assert manifest["counts"]["invalid"] == {
        "limit: template size": 5,
        "limit: template output": 1,
        "limit: time": 2,
        "render: templates.prompt": 2,
    }
    import datasets

    prompts = datasets.load_dataset(str(folder / "pkg"), split="train")["prompt"]
    assert any(p.startswith(ORDINARY) for p in prompts), prompts  # bounded, ordinary templates still work


def test_bounded_passes_pickle_into_worker_processes(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--num-proc` sends the passes to datasets' workers with dill: nothing a pass holds (a JSON decoder, a compiled
    # regex, the sandbox) may stop that, and a pass run there keeps its bounds, the time limit of the process that made
    # it included (a Ray worker does not have the driver's environment).
    import dill
    from dsc.compiler.batch import chain
    from dsc.compiler.derive import make_derive_pass
    from dsc.compiler.render import make_render_pass
    from dsc.compiler.spec import load_spec
    from dsc.compiler.validate import make_validate_pass

    _template_hazards(folder)
    (folder / "s.yaml").write_text(spec_text(**HAZARD_SPEC), encoding="utf-8")
    spec = load_spec(folder / "s.yaml")
    monkeypatch.setenv("DSC_RECORD_SECONDS", "0.3")
    sent = dill.dumps(chain(make_validate_pass(spec), make_derive_pass(spec), make_render_pass(spec)))
    monkeypatch.delenv("DSC_RECORD_SECONDS")
    passes = dill.loads(sent)
    records = [{"instruction": "hi", "output": "y"}, {"instruction": "x", "output": "y", "kind": "power"},
               {"instruction": "x", "output": "y", "kind": "loops"}]
    batch = {"_source": [0] * 3, "_file": ["data.jsonl"] * 3, "_row": [0, 1, 2], "_line": [1, 2, 3],
             "_record": [json.dumps(r).encode() for r in records]}
    start = time.monotonic()
    out = passes(batch)
    assert 0.3 <= time.monotonic() - start < 1.8
    assert out["prompt"][0].startswith("hi 1024") and out["_drop"] == [None, "limit: template size", "limit: time"]
    assert "data.jsonl:3: templates.prompt: took longer than 0.3 s (the per-record time limit" in out["_error"][2]


def test_environment_settings_are_checked_before_anything_is_made(folder: Path) -> None:
    # DSC_RECORD_SECONDS and DSC_CHUNK_ROWS belong to whoever runs dsc (a spec cannot lift its own time limit); a value
    # that is not a number above 0 is a usage error naming the variable, exit 2: no package, no temporary folder.
    from conftest import dsc_cli

    write_jsonl(folder / "data.jsonl", GOOD)
    (folder / "s.yaml").write_text(spec_text(), encoding="utf-8")
    spill = folder / "spill"
    spill.mkdir()
    bad = [("DSC_RECORD_SECONDS", "soon", "a number"), ("DSC_RECORD_SECONDS", "0", "a number"),
           ("DSC_RECORD_SECONDS", "inf", "a number"), ("DSC_CHUNK_ROWS", "1.5", "a whole number"),
           ("DSC_CHUNK_ROWS", "-3", "a number")]
    for name, value, kind in bad:
        for command, *output in (("build", "-o", "pkg"), ("validate",)):
            done = dsc_cli(command, "s.yaml", "-q", *output, cwd=folder, env={name: value, "DSC_SPILL_DIR": str(spill)})
            assert done.returncode == 2, (name, value, command, done.stderr)
            assert f"dsc {command}: error:\n  {name}={value!r}: must be {kind} above 0" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr and not (folder / "pkg").exists() and not any(spill.iterdir())
    done = dsc_cli("build", "s.yaml", "-q", "-o", "pkg", cwd=folder, env={"DSC_RECORD_SECONDS": "30", "DSC_CHUNK_ROWS": "2"})
    assert done.returncode == 0 and (folder / "pkg" / "manifest.json").is_file(), done.stderr

    from dsc.builders.hub_http import hub_timeout
    from dsc.compiler.errors import UsageError

    with pytest.MonkeyPatch.context() as env:  # the same check for the Hub's timeout (publish, push, load)
        env.setenv("DSC_HUB_TIMEOUT", "never")
        with pytest.raises(UsageError, match=r"DSC_HUB_TIMEOUT='never': must be a number above 0"):
            hub_timeout()


AMPLIFIERS = [
    "{{ ('{0}' * 100000).format(big) }}",
    "{{ ('%(a)s' * 100000) % {'a': big} }}",
    "{{ big | replace('', 'yyyyyyyyyy') }}",
    "{{ big.replace('x', 'yy') }}",
    "{{ ([big] * 100000) | join }}",
    "{{ ','.join([big] * 1000) }}",
    "{{ big | json(indent=10**9) }}",
    "{{ 'a'.ljust(10**10) }}",
    "{{ '%.2000000f' % 1.5 }}",
    "{{ big | center(10**10) }}",
    "{% set ns = namespace(x=big) %}{% for i in range(3) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}",
    "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}{{ m() }}",
]


@pytest.mark.parametrize("text", AMPLIFIERS)
def test_text_amplifiers_are_refused_before_they_allocate(text: str) -> None:
    # In-process (the CLI cases above cover the wiring): each would build gigabytes from a 900 KB field.
    from dsc.compiler.limits import RECORD_SECONDS, LimitError, record_limits, timed_records
    from dsc.compiler.sandbox import render_text

    start = time.monotonic()
    with timed_records(), pytest.raises(LimitError), record_limits(RECORD_SECONDS):
        render_text(text, {"big": "x" * 900_000})
    assert time.monotonic() - start < 1.5


def test_time_limit_holds_outside_the_main_thread() -> None:
    # The timer signal only reaches the main thread (dsc.build called from a worker thread): there the sandbox's own
    # deadline checks stop the record.
    import threading

    from dsc.compiler.limits import LimitError, record_limits, timed_records
    from dsc.compiler.sandbox import render_text

    caught: list[BaseException] = []

    def work() -> None:
        try:
            with timed_records(), record_limits(0.5):
                render_text("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {})
        except LimitError as exc:
            caught.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(caught) == 1 and "longer than 0.5 s (the per-record time limit" in str(caught[0])
    assert 0.5 <= time.monotonic() - start < 3.5


# --- odd records: numbers, nesting, surrogates, encodings, CSV quirks -------------------------------------------------

RECORD_FIELDS = ("n: {type: integer}", "score: {type: number}", "ratio: {type: number, allow_nan: true}", "extra: {type: any}")
DEEP = b"[" * 100_000 + b"]" * 100_000


def _record_hazards(folder: Path) -> dict[int, str]:
    """Odd records in JSON lines, a CSV and a JSON array; returns {jsonl line: expected message}."""
    lines: list[dict | bytes] = [
        GOOD[0],
        {"instruction": "big", "output": "x", "n": int("9" * 400)},
        b'{"instruction": "deep", "output": "x", "extra": ' + DEEP + b"}",
        b'{"instruction": "surrogate", "output": "\\ud800"}',
        b'{"instruction": "bad \xff utf8", "output": "x"}',
        b'{"instruction": "nan", "output": "x", "score": NaN}',
        b'{"instruction": "inf", "output": "x", "score": 1e999}',
        b'{"instruction": "digits", "output": "x", "n": ' + b"7" * 5000 + b"}",
        b'{"instruction": "allowed", "output": "x", "ratio": NaN}',
        {"instruction": "big float", "output": "x", "n": 1e300},
        GOOD[1],
        {"instruction": "wide number", "output": "x", "score": 10**30},  # valid: a number field takes it as a float
        {"instruction": "too wide", "output": "x", "score": int("9" * 400)},
    ]
    write_jsonl(folder / "data.jsonl", lines)
    csv_rows = [
        b"instruction,output",
        b"csv good,yes",
        b"too,many,fields",
        b"too few fields",
        b"bad \xfe bytes,x",
        b'long,"' + b"z" * 200_000 + b'"',
        b"csv good too,yes",
    ]
    (folder / "data.csv").write_bytes(b"\r\n".join(csv_rows) + b"\r\n")
    (folder / "data.json").write_bytes(b'[\n  {"instruction": "j", "output": "k"},\n  {"instruction": "deep", "output": "x", "extra": '
                                       + DEEP + b'},\n  {"instruction": "bad \xff", "output": "k"}\n]\n')
    return {
        2: "data.jsonl:2: n: 999",
        3: "data.jsonl:3: nested too deeply to read",
        4: "data.jsonl:4: output: holds a lone UTF-16 surrogate",
        5: "data.jsonl:5: not UTF-8 text",
        6: "data.jsonl:6: score: NaN or Infinity is not allowed here (set allow_nan: true",
        7: "data.jsonl:7: score: NaN or Infinity",
        8: "data.jsonl:8: not valid JSON: Exceeds the limit (4300 digits)",
        10: "data.jsonl:10: n: 1e+300 does not fit a 64-bit integer",
        13: "data.jsonl:13: score: 999",
    }


def test_odd_json_lines_are_located(folder: Path) -> None:
    expected = _record_hazards(folder)
    output = fails(folder, spec_text(fields=RECORD_FIELDS), 1, "9 record(s) failed", *expected.values())
    assert "does not fit a 64-bit integer" in output and "does not fit a 64-bit float" in output


def test_odd_csv_rows_and_json_array_items_are_located(folder: Path) -> None:
    _record_hazards(folder)
    spec = spec_text(sources="[{path: data.csv}, {path: data.json}]", fields=("extra: {type: any}",))
    fails(folder, spec, 1, "data.csv:3: has 3 field(s); the header has 2", "data.csv:4: has 1 field(s); the header has 2",
          "data.csv:5: not UTF-8 text", "data.json:3: nested too deeply to read", "data.json:4: not UTF-8 text", "5 record(s) failed")


def test_odd_records_skip_and_count(folder: Path) -> None:
    _record_hazards(folder)
    spec = spec_text(fields=RECORD_FIELDS, on_invalid="skip", sources="[{path: data.jsonl}, {path: data.csv}, {path: data.json}]")
    manifest = _build_and_load(folder, spec, kept=4 + 3 + 1)
    assert manifest["counts"]["invalid"] == {
        "invalid: n: integer out of range": 2,
        "invalid: nested too deeply": 2,
        "invalid: output: lone surrogate": 1,
        "invalid: not UTF-8": 3,
        "invalid: score: not a finite number": 2,
        "invalid: number out of range": 1,
        "invalid: score: number out of range": 1,
        "invalid: CSV field count": 2,
    }


def _build_and_load(folder: Path, spec: str, kept: int, *args: str, env: dict[str, str] | None = None) -> dict:
    """Build under on_invalid: skip; the package loads with `datasets` and holds `kept` records."""
    import datasets

    (folder / "s.yaml").write_text(spec, encoding="utf-8")
    rc, out, err = run(folder, "build", "s.yaml", "-q", "-o", str(folder / "pkg"), *args, env=env)
    assert rc == 0, out + err
    loaded = datasets.load_dataset(str(folder / "pkg"))
    assert sum(len(split) for split in loaded.values()) == kept
    return json.loads((folder / "pkg" / "manifest.json").read_text(encoding="utf-8"))

