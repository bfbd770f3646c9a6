"""Streaming reads and chunked phases: a source is read a block and a chunk at a time, and how the input is cut up
never changes what is read or what is built."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from conftest import FORMATS
from dsc.compiler import sources
from dsc.compiler.errors import RecordError

import dsc

ARRAY = (
    '\ufeff[\n  {"instruction": "caf\u00e9 \u4e2d\u6587", "output": "x"},\n'
    '  12345678901234567890,\n\n  [[[[1]]]],\n  "a string \\" with \\u00e9scapes ]",\n'
    '  {"nested": {"deep": [1, 2, {"k": "v"}]}},\n  true, null, -0.5e10,\n]\n'
)
"""A JSON array with a BOM, multi-byte characters, a long number, nesting, escapes and a trailing comma: every
boundary a block can fall on."""


def _items(data: bytes, block: int, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[int, str]], str]:
    monkeypatch.setattr(sources, "BLOCK", block)
    digest = hashlib.sha256()
    items = list(sources._json_array_items(io.BytesIO(data), digest, "a.json"))
    return items, digest.hexdigest()


def test_a_json_array_reads_the_same_whatever_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ARRAY.encode("utf-8")
    whole, whole_digest = _items(data, len(data) + 1, monkeypatch)
    expected = json.loads(ARRAY.lstrip("\ufeff").replace(",\n]", "\n]"))
    assert [json.loads(raw) for _, raw in whole] == expected
    assert [line for line, _ in whole] == [2, 3, 5, 6, 7, 8, 8, 8]
    assert whole_digest == hashlib.sha256(data).hexdigest()
    for block in (1, 2, 3, 5, 7, 64):
        assert _items(data, block, monkeypatch) == (whole, whole_digest), block


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[\n{"a": 1},\n{"a": 2\n', 4, "invalid JSON"),
        ('[\n{"a": 1}\n{"a": 2}]', 3, "expected ',' or ']'"),
        ('{"a": 1}', 1, "must hold a JSON array"),
    ],
)
def test_broken_json_arrays_are_located_at_any_block_size(
    text: str, line: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for block in (1, 4, 1 << 20):
        with pytest.raises(RecordError) as error:
            _items(text.encode(), block, monkeypatch)
        assert error.value.problems[0].location.line == line, block
        assert message in str(error.value)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_chunk_size_and_workers_do_not_change_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = dsc.build(FORMATS / "adgen.yaml", output=tmp_path / "default", limit=400, num_proc=1).path
    monkeypatch.setenv("DSC_CHUNK_ROWS", "7")
    monkeypatch.setattr(sources, "BLOCK", 4096)
    small = dsc.build(FORMATS / "adgen.yaml", output=tmp_path / "small", limit=400, num_proc=2).path
    first, other = _files(default), _files(small)
    assert sorted(first) == sorted(other)
    assert any(name.startswith("data/validation-") for name in first)
    assert json.loads(first["manifest.json"])["counts"]["dropped"], "the set exercises dedup drops"
    for name, data in first.items():
        assert other[name] == data, name
