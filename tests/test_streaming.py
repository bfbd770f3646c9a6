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


def test_spilled_rows_and_texts_read_back_by_row_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What dedup's global step reads from disk (signature rows, compared texts) and takes from chunked tables comes
    back exactly, in the order asked, with repeats, across block and chunk edges, near and far apart."""
    import numpy as np
    import pyarrow as pa
    from dsc.compiler.engine import spill

    monkeypatch.setattr(spill, "GAP", 16)  # runs of nearby rows and far ones both happen on this small file
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 2**32, size=(1000, 8), dtype=np.uint64).astype(np.uint32)
    rows = spill.RowFile(tmp_path / "rows.u32", np.uint32, 8)
    for lo in range(0, 1000, 300):
        rows.append(matrix[lo : lo + 300])
    texts = ["", "caf\u00e9", "\u4e2d\u6587 text", *(f"record {i} " * (i % 7) for i in range(997))]
    column = spill.TextFile(tmp_path / "texts.txt")
    for lo in range(0, 1000, 333):
        column.append(pa.array(["not this", *texts[lo : lo + 333]]).slice(1))  # an array that starts at an offset
    table = pa.Table.from_batches([pa.record_batch({"t": texts[lo : lo + 128]}) for lo in range(0, 1000, 128)])
    for ask in (np.array([999, 0, 5, 5, 500, 1, 998]), rng.integers(0, 1000, 400), np.arange(1000), np.zeros(0, np.int64)):
        assert np.array_equal(rows[ask], matrix[ask])
        assert np.array_equal(rows[ask, 2:5], matrix[ask, 2:5])
        assert column.texts(ask) == [texts[i] for i in ask]
        assert spill.take(table, ask).column("t").to_pylist() == [texts[i] for i in ask]
    assert rows.shape == (1000, 8) and column.rows == 1000


def test_a_spill_is_walked_slice_by_slice_across_its_chunks() -> None:
    """What the package writer and the report read of a split: any spans, any columns, chunk edges inside slices."""
    import pyarrow as pa
    from dsc.compiler.engine.spill import Workspace

    schema = pa.schema([("n", pa.int64()), ("text", pa.string())])
    split = Workspace().spill("split", schema)
    for lo in range(0, 1000, 300):
        split.write(pa.table({"n": list(range(lo, min(lo + 300, 1000))), "text": [f"r{i}" for i in range(lo, min(lo + 300, 1000))]}))
    spans = [(0, 7), (295, 10), (999, 1), (100, 0), (0, 1000)]
    walked = [t.to_pydict() for t in split.walk(spans, ["text"])]
    assert walked == [{"text": [f"r{i}" for i in range(a, a + n)]} for a, n in spans]
    assert [len(t) for t in split.slices(rows=256)] == [256, 256, 256, 232]
    assert pa.concat_tables(split.slices(["n"], rows=333)).column("n").to_pylist() == list(range(1000))


def test_a_build_removes_its_workspace_when_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spills and dedup's files are closed and their folder removed by the build itself, not left to the garbage
    collector (which warns, and holds the files open until it runs)."""
    import gc
    import warnings

    monkeypatch.setenv("DSC_SPILL_DIR", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.disable()  # nothing is cleaned up behind the build's back
        try:
            dsc.build(FORMATS / "alpaca.yaml", output=tmp_path / "pkg", limit=60)  # near-copy dedup: its files too
            assert not any((tmp_path / "spill").iterdir())
        finally:
            gc.enable()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
