"""Bad records of many kinds: located errors (file, line, field), exit 1, nothing written; or skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, dsc_cli
from dsc.compiler.errors import RecordError

import dsc

SPEC = """name: bad
sources:
  - path: {path}
fields:
  instruction: {{type: string, required: true}}
  input: {{type: string, default: ""}}
  output: {{type: string, required: true}}
  score: {{type: integer}}
templates:
  prompt: "{{{{ instruction }}}}{{% if input %}}\\n{{{{ input }}}}{{% endif %}}\\n"
  response: "{{{{ output }}}}"
on_invalid: {on_invalid}
"""


def real_lines(n: int) -> list[str]:
    """The first n Alpaca records as JSON lines."""
    records = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:n]
    return [json.dumps(r) for r in records]


BROKEN = {
    3: ('{"instruction": "Name a color."}', "output", "required field is missing", "missing field 'output'"),
    5: ('{"instruction": 42, "output": "x"}', "instruction", "expected string, got int", "instruction: wrong type"),
    7: ('{"instruction": "a", "output": null}', "output", "expected string, got null", "output: wrong type"),
    9: ('{"instruction": "a", "output": "b", "score": "high"}', "score", "expected integer, got str", "score: wrong type"),
    11: ('["not", "an", "object"]', None, "a record must be a JSON object", "not an object"),
    13: ('{"instruction": "a", "output": "b"', None, "not valid JSON", "not valid JSON"),
}


def write_broken(tmp_path: Path, on_invalid: str) -> Path:
    lines = real_lines(20)
    for line_no, (text, *_rest) in BROKEN.items():
        lines[line_no - 1] = text
    data = tmp_path / "records.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.format(path=data, on_invalid=on_invalid), encoding="utf-8")
    return spec


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    spec = write_broken(tmp_path, "error")
    with pytest.raises(RecordError) as caught:
        dsc.build(spec, output=tmp_path / "out")
    message = caught.value.render()
    data = tmp_path / "records.jsonl"
    for line_no, (_text, field, words, _reason) in BROKEN.items():
        head = f"{data}:{line_no}: {field}: " if field else f"{data}:{line_no}: "
        assert any(m.startswith(head) and words in m for m in message.splitlines()), (line_no, message)
    assert f"{len(BROKEN)} record(s) failed" in message
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_cli_exits_1_and_prints_no_traceback(tmp_path: Path) -> None:
    spec = write_broken(tmp_path, "error")
    result = dsc_cli("build", str(spec), "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert ":3: output: required field is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()
    result = dsc_cli("validate", str(spec), "-q", cwd=tmp_path)
    assert result.returncode == 1 and ":5: instruction: expected string, got int: 42" in result.stderr


def test_skip_counts_each_reason(tmp_path: Path) -> None:
    spec = write_broken(tmp_path, "skip")
    package = dsc.build(spec, output=tmp_path / "out")
    counts = package.manifest["counts"]
    assert counts["read"] == 20
    assert counts["invalid"] == {f"invalid: {reason}": 1 for *_x, reason in BROKEN.values()}
    assert sum(counts["kept"].values()) == 20 - len(BROKEN)


def test_render_errors_are_located(tmp_path: Path) -> None:
    data = tmp_path / "r.jsonl"
    data.write_text('{"doc": {"title": "a"}}\n{"doc": {"name": "b"}}\n', encoding="utf-8")
    spec = tmp_path / "r.yaml"
    spec.write_text(
        f"""name: r
sources: [{{path: {data}}}]
fields: {{doc: {{type: object, required: true}}}}
templates: {{prompt: "Title: {{{{ doc.title }}}}\\n", response: "ok"}}
""",
        encoding="utf-8",
    )
    with pytest.raises(RecordError) as caught:
        dsc.build(spec, output=tmp_path / "out")
    assert f"{data}:2: templates.prompt: 'dict object' has no attribute 'title'" in caught.value.render()


def test_json_array_errors_point_at_the_line(tmp_path: Path) -> None:
    records = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:4]
    del records[2]["output"]
    data = tmp_path / "a.json"
    data.write_text(json.dumps(records, indent=2), encoding="utf-8")
    spec = tmp_path / "a.yaml"
    spec.write_text(SPEC.format(path=data, on_invalid="error"), encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        dsc.build(spec, output=tmp_path / "out")
    text = data.read_text().splitlines()
    starts = [i + 1 for i, line in enumerate(text) if line == "  {"]
    assert f"{data}:{starts[2]}: output: required field is missing" in caught.value.render()


def test_truncated_json_file_is_a_located_error(tmp_path: Path) -> None:
    data = tmp_path / "a.json"
    data.write_text((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8")[:5000], encoding="utf-8")
    spec = tmp_path / "a.yaml"
    spec.write_text(SPEC.format(path=data, on_invalid="skip"), encoding="utf-8")
    result = dsc_cli("build", str(spec), "-q", cwd=tmp_path)
    assert result.returncode == 1 and f"{data}:" in result.stderr and "invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_overflow_policies(tmp_path: Path) -> None:
    lines = real_lines(30)
    data = tmp_path / "r.jsonl"
    data.write_text("\n".join(lines), encoding="utf-8")
    spec = tmp_path / "r.yaml"
    spec.write_text(SPEC.format(path=data, on_invalid="error") + "lengths: {max_length: 64, overflow: drop}\n", encoding="utf-8")
    package = dsc.build(spec, output=tmp_path / "drop")
    dropped = package.manifest["counts"]["dropped"]["too long: max_length"]
    assert 0 < dropped < 30 and sum(package.manifest["counts"]["kept"].values()) == 30 - dropped
    spec.write_text(SPEC.format(path=data, on_invalid="error") + "lengths: {max_length: 64, overflow: error}\n", encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        dsc.build(spec, output=tmp_path / "err")
    assert "longer than lengths.max_length" in caught.value.render()
    assert f"{dropped} record(s) longer" in caught.value.render()
    assert not (tmp_path / "err").exists()


def test_quick_check_agrees_with_json_schema() -> None:
    """The plain-Python fast path must accept exactly what the fields' JSON Schema accepts."""
    import itertools

    import jsonschema
    from dsc.compiler.spec import FieldSpec
    from dsc.compiler.validate import field_schema, quick_check

    fields = (
        FieldSpec("s", "string", required=True),
        FieldSpec("i", "integer"),
        FieldSpec("n", "number", default=0),
        FieldSpec("b", "boolean"),
        FieldSpec("o", "object", default={}),
        FieldSpec("a", "array"),
        FieldSpec("x", "any"),
    )
    schema = {
        "type": "object",
        "properties": {f.name: field_schema(f) for f in fields},
        "required": [f.name for f in fields if f.required],
    }
    validator = jsonschema.Draft202012Validator(schema)
    check = quick_check(fields)
    assert check is not None  # the fast path applies to plain fields
    values = ["t", 3, 3.5, 2.0, True, None, {"k": 1}, [1], "MISSING"]
    checked = 0
    for s, i, n, b in itertools.product(values, repeat=4):
        for o, a in (({}, []), ("no", None), (None, "no")):
            record = {k: v for k, v in zip("sinboa", (s, i, n, b, o, a), strict=True) if v != "MISSING"}
            if check(record):  # accepted by the fast path => valid by JSON Schema
                assert validator.is_valid(record), record
            checked += 1
    assert checked == len(values) ** 4 * 3
    # and it does accept the ordinary valid record
    assert check({"s": "t", "i": 1, "n": 0.5, "b": False, "o": {}, "a": [], "x": None})


def test_lone_variable_fast_path_renders_like_jinja() -> None:
    from dsc.compiler.sandbox import lone_variable, template

    assert lone_variable("{{ output }}") == "output"
    for text in ("{{ output }}\n", "x{{ output }}", "{{ output | upper }}", "{{ a }}{{ b }}", "{{ a.b }}"):
        assert lone_variable(text) is None, text
    for value in ("plain", "", "  spaced\n", "{{ not a template }}", "é中文"):
        assert template("{{ output }}").render({"output": value}) == value
