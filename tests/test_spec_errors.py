"""Bad specs: each error names the file, the line and the key path, exits 2, and prints no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, dsc_cli, run_dsc
from dsc.compiler.errors import SpecError
from dsc.compiler.spec import load_spec

GOOD = f"""name: demo
sources:
  - path: {DATA / "alpaca_en_demo.json"}
fields:
  instruction: {{type: string, required: true}}
  input: {{type: string, default: ""}}
  output: {{type: string, required: true}}
templates:
  prompt: "{{{{ instruction }}}}\\n{{{{ input }}}}"
  response: "{{{{ output }}}}"
"""

CASES = [
    # (description, text to replace in GOOD, replacement, expected line, expected message parts)
    (
        "undefined template variable",
        "{{ instruction }}\\n",
        "{{ instrucion }}\\n",
        9,
        ["templates.prompt", "undefined variable 'instrucion'", "did you mean 'instruction'", "fields are instruction, input, output"],
    ),
    ("misspelled top-level key", "templates:", "templtes:", 8, ["unknown key 'templtes'", "did you mean 'templates'"]),
    (
        "wrong type",
        "sources:\n  - path:",
        "lengths: {max_length: many}\nsources:\n  - path:",
        2,
        ["lengths.max_length", "'many' is not of type 'integer'"],
    ),
    ("missing source file", f"{DATA / 'alpaca_en_demo.json'}", "nowhere/*.json", 3, ["sources.0.path", "no file matches 'nowhere/*.json'"]),
    (
        "bad field type",
        "type: string, required: true}\n  input",
        "type: text, required: true}\n  input",
        5,
        ["fields.instruction.type", "'text' is not one of"],
    ),
    ("template syntax", "{{ output }}", "{{ output }", 10, ["templates.response", "template syntax error"]),
    ("missing template file", '"{{ output }}"', "{file: nope.j2}", 10, ["templates.response.file", "template file 'nope.j2' not found"]),
    ("licence other without terms", "fields:\n", "license: other\nfields:\n", 4, ["license: 'other' needs license_name and license_link"]),
    ("licence name for a known licence", "fields:\n", "license: mit\nlicense_name: mine\nfields:\n", 5,
     ["license_name: only for license: other"]),
    ("licence id not a Hub id", "fields:\n", "license: CC BY 4.0\nfields:\n", 4, ["license", "does not match"]),
    ("invalid YAML", "fields:\n", "fields:\n  - [\n", 7, ["invalid YAML", "flow sequence at line 5"]),
    (
        "required with default",
        'input: {type: string, default: ""}',
        'input: {type: string, required: true, default: ""}',
        6,
        ["fields.input.default", "a required field cannot have a default"],
    ),
    (
        "bad regex",
        "templates:",
        "derived:\n  x: {from: input, regex: '(unclosed'}\ntemplates:",
        9,
        ["derived.x.regex", "invalid regular expression"],
    ),
    (
        "derived from unknown field",
        "templates:",
        "derived:\n  x: {from: inptu, regex: '(a)'}\ntemplates:",
        9,
        ["derived.x.from", "unknown field 'inptu'"],
    ),
    ("turns all without history", "templates:", "labels: {turns: all}\ntemplates:", 8, ["labels.turns", "needs templates.history"]),
    ("bad name", "name: demo", "name: 'no spaces please'", 1, ["name", "does not match"]),
    ("policy typo", "templates:", "lengths: {max_length: 64, overflow: cut}\ntemplates:", 8, ["lengths.overflow"]),
]


@pytest.mark.parametrize(("what", "old", "new", "line", "parts"), CASES, ids=[c[0] for c in CASES])
def test_spec_error_is_located(what: str, old: str, new: str, line: int, parts: list[str], tmp_path: Path) -> None:
    assert old in GOOD, what
    spec = tmp_path / "x.yaml"
    spec.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    message = caught.value.render()
    assert f"{spec}:{line}:" in message, message
    for part in parts:
        assert part in message, message


def test_good_spec_loads(tmp_path: Path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text(GOOD, encoding="utf-8")
    loaded = load_spec(spec)
    assert loaded.name == "demo" and loaded.variables == ("instruction", "input", "output")


def test_cli_spec_error_exits_2_without_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text(GOOD.replace("{{ instruction }}\\n", "{{ instrucion }}\\n"), encoding="utf-8")
    for command in ("build", "validate", "preview"):  # build in a real process; the others in this one
        result = (run_dsc if command == "build" else dsc_cli)(command, str(spec), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"{spec}:9: templates.prompt: undefined variable 'instrucion'" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()


def test_missing_spec_file_and_unknown_tokenizer(tmp_path: Path) -> None:
    result = run_dsc("build", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "no such spec file" in result.stderr and "Traceback" not in result.stderr
    spec = tmp_path / "x.yaml"
    spec.write_text(GOOD + "tokenizer: ./no/such/tokenizer\n", encoding="utf-8")
    result = dsc_cli("build", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{spec}:11: tokenizer: no tokenizer folder at './no/such/tokenizer'" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_dsc("build", "formats/alpaca.yaml", "--limit", "zero", cwd=tmp_path)
    assert result.returncode == 2 and "expected a positive integer" in result.stderr
    result = dsc_cli("frobnicate", cwd=tmp_path)
    assert result.returncode == 2


def test_a_python_override_typo_names_the_override_not_a_spec_line(tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    spec.write_text(GOOD, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(spec, {"lenghts": {"max_length": 64}})
    problem = caught.value.problems[0]
    assert problem.location.line is None and problem.location.field == "the lenghts override"
    assert "did you mean 'lengths'" in problem.message
