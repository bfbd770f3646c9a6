"""audit.jsonl and `dsc validate`: every record that did not go in as it came is listed by location with its facts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from conftest import DATA, dsc_cli, run_dsc
from dsc.compiler.encode import IGNORE, TOO_SHORT

import dsc

SPEC = """name: audited
sources: [{{path: data/records.jsonl}}]
fields:
  instruction: {{type: string, required: true}}
  input: {{type: string, default: ""}}
  output: {{type: string, required: true}}
on_invalid: {on_invalid}
derived:
  verb: {{from: instruction, regex: "^(\\\\w+) "}}
templates:
  prompt: {{file: alpaca_prompt.j2}}
  response: "{{{{ output }}}}"
lengths: {lengths}
dedup: {{compare: prompt+response}}
"""


def _project(tmp_path: Path, on_invalid: str = "skip", lengths: str = "{max_length: 160}") -> tuple[Path, list[dict]]:
    """A spec over 120 real Alpaca records plus, at known lines, a record missing its output, a line that is not
    JSON, an instruction the derived regex cannot match, and an exact copy of line 1."""
    records = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:120]
    lines = [json.dumps(r) for r in records]
    lines.insert(10, json.dumps({"instruction": "Say hi.", "input": ""}))  # line 11
    lines.insert(20, '{"instruction": "broken", ')  # line 21
    lines.insert(30, json.dumps({"instruction": "Hi", "input": "", "output": "Hello."}))  # line 31: no space, no verb
    lines.append(json.dumps(records[0]))  # line 124: a copy of line 1
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "audited.yaml"
    spec.write_text(SPEC.format(on_invalid=on_invalid, lengths=lengths), encoding="utf-8")
    return spec, records


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_audit_lists_every_record_not_kept_as_it_came(tmp_path: Path) -> None:
    spec, _records = _project(tmp_path)
    package = dsc.build(spec, output=tmp_path / "out")
    audit = _lines(package.path / "audit.jsonl")
    text = (package.path / "audit.jsonl").read_text(encoding="utf-8")
    assert str(tmp_path) not in text  # no absolute paths
    assert [(a["file"], a["source_id"]) for a in audit] == sorted(
        ((a["file"], a["source_id"]) for a in audit), key=lambda k: (k[0], int(k[1].split("#")[1]))
    )
    assert {a["file"] for a in audit} == {"data/records.jsonl"}
    by_line = {a["line"]: a for a in audit}
    assert by_line[11]["stage"] == "invalid" and by_line[11]["reason"] == "invalid: missing field 'output'"
    assert by_line[11]["detail"] == {"field": "output", "message": "required field is missing"}
    assert by_line[21]["reason"] == "invalid: not valid JSON" and by_line[21]["source_id"] == "records.jsonl#20"
    derived = by_line[31]
    assert derived["reason"] == "invalid: derived 'verb' did not match"
    assert derived["detail"] == {"field": "instruction", "regex": "^(\\w+) ", "text": "Hi"}
    copy = by_line[124]
    assert copy["stage"] == "duplicate" and copy["reason"] == "duplicate: exact"
    assert copy["detail"]["kept_line"] == 1 and copy["detail"]["kept_file"] == "data/records.jsonl"
    assert copy["detail"]["similarity"] == 1.0 and copy["detail"]["measure"] == "exact"

    m = package.manifest
    stages = m["audit"]["stages"]
    assert stages["invalid"] == sum(m["counts"]["invalid"].values()) >= 3
    assert stages["dropped"] + stages["duplicate"] == sum(m["counts"]["dropped"].values())
    assert stages["truncated"] == m["counts"]["truncated"] > 0 and m["audit"]["records"] == len(audit)

    # truncated records: lengths before and after, and the package rows are exactly that long
    rows = {r["source_id"]: r for r in pq.read_table(package.path / "data").to_pylist()}
    for a in (a for a in audit if a["stage"] == "truncated"):
        before, after = a["detail"]["before"], a["detail"]["after"]
        assert after["prompt"] + after["response"] == len(rows[a["source_id"]]["input_ids"]) <= 160
        assert after["response"] < before["response"] or after["prompt"] < before["prompt"]


def test_cut_below_the_floor_is_dropped_and_named(tmp_path: Path) -> None:
    spec, _records = _project(tmp_path, lengths="{max_length: 96, min_target_tokens: 48}")
    package = dsc.build(spec, output=tmp_path / "out")
    short = [a for a in _lines(package.path / "audit.jsonl") if a["reason"] == TOO_SHORT]
    assert short and package.manifest["counts"]["dropped"][TOO_SHORT] == len(short)
    for a in short:
        assert a["stage"] == "dropped" and a["detail"]["min_target_tokens"] == 48
        assert a["detail"]["after"]["response"] - 1 < 48 and a["detail"]["after"]["response"] < a["detail"]["before"]["response"]
    # every truncated record that stayed trains at least the floor's worth of its answer, plus the EOS
    truncated = {a["source_id"] for a in _lines(package.path / "audit.jsonl") if a["stage"] == "truncated"}
    table = pq.read_table(package.path / "data").to_pylist()
    trained = [sum(1 for x in r["labels"] if x != IGNORE) for r in table if r["source_id"] in truncated]
    assert trained and min(trained) >= 49


def test_default_floor_drops_what_the_old_cut_kept(tmp_path: Path) -> None:
    """At max_length 96 the old cut kept some answers at a handful of tokens; the default floor (16) drops them."""
    spec, _records = _project(tmp_path, lengths="{max_length: 96}")
    floor = dsc.build(spec, output=tmp_path / "floor").manifest["counts"]["dropped"].get(TOO_SHORT, 0)
    old = dsc.build(spec, output=tmp_path / "old", lengths={"max_length": 96, "min_target_tokens": 1})
    cut = [a for a in _lines(old.path / "audit.jsonl") if a["stage"] == "truncated"]
    assert floor == sum(1 for a in cut if a["detail"]["after"]["response"] - 1 < 16) > 0


def test_validate_lists_invalid_records_checks_lengths_and_writes_the_audit(tmp_path: Path) -> None:
    spec, _records = _project(tmp_path)
    result = dsc_cli("validate", str(spec), "-q", "--audit", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "data/records.jsonl:11: invalid: missing field 'output'" in result.stdout
    assert "data/records.jsonl:31: invalid: derived 'verb' did not match" in result.stdout
    assert "lengths (qwen3):" in result.stdout and "truncated" in result.stdout
    audit = _lines(tmp_path / "a.jsonl")
    assert {a["stage"] for a in audit} == {"invalid", "truncated"}  # validate does not dedup
    skipped = dsc_cli("validate", str(spec), "-q", "--no-lengths", cwd=tmp_path)
    assert skipped.returncode == 0 and "lengths: not checked (--no-lengths)" in skipped.stdout
    again = dsc_cli("validate", str(spec), "-q", "--no-lengths", "--audit", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    assert again.returncode == 0 and _lines(tmp_path / "a.jsonl")  # its own audit is replaced
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"todo": "a file of the user\'s"}\n', encoding="utf-8")
    refused = dsc_cli("validate", str(spec), "-q", "--no-lengths", "--audit", str(notes), cwd=tmp_path)
    assert refused.returncode == 2 and "is not an audit file dsc wrote" in refused.stderr and "Traceback" not in refused.stderr
    assert notes.read_text(encoding="utf-8") == '{"todo": "a file of the user\'s"}\n'


def test_validate_fails_a_spec_whose_lengths_fail_at_build(tmp_path: Path) -> None:
    spec, _records = _project(tmp_path, lengths="{max_length: 64, overflow: error}")
    result = dsc_cli("validate", str(spec), "-q", cwd=tmp_path)
    assert result.returncode == 1 and "longer than lengths.max_length" in result.stderr
    assert "records.jsonl:1:" in result.stderr and "Traceback" not in result.stderr
    assert dsc_cli("validate", str(spec), "-q", "--no-lengths", cwd=tmp_path).returncode == 0


def test_validate_never_downloads_a_tokenizer(tmp_path: Path) -> None:
    spec, _records = _project(tmp_path)
    spec.write_text(spec.read_text(encoding="utf-8") + "tokenizer: dsc-tests/not-a-cached-tokenizer\n", encoding="utf-8")
    result = run_dsc("validate", str(spec), "-q", cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "lengths: not checked (tokenizer 'dsc-tests/not-a-cached-tokenizer' is not in the local Hub cache" in result.stdout
