"""The build pipeline: sources -> validate/derive/render (+ dedup signatures) -> dedup's global step -> tokenize and
split -> splits, counts.

Each phase streams chained passes over chunks of records (`dsc.compiler.engine`: in this process, forked workers or
Ray) and keeps only what the next global step needs: the rendered records go to a spill file on disk, the tokenized
ones to one spill per split, the audit rows to the trail's spill (`dsc.compiler.audit.Trail`), and in memory stay
the split keys, dedup's per-record columns and counts. Rows marked dropped are counted and filtered chunk by chunk,
and records that must fail the build (bad records under `on_invalid: error`, over-long ones under `overflow: error`)
raise a RecordError listing the first of them with their locations. So peak memory follows the chunk size, not the
number of records, apart from those few columns.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.compiler.audit import Trail, dropped_rows, marked
from dsc.compiler.batch import BOOKKEEPING, DETAIL, DROP, ERROR, Pass, chain, field_column, source_ids
from dsc.compiler.chat.chat_template import load_chat_template
from dsc.compiler.chat.encode_chat import make_chat_encode_pass
from dsc.compiler.chat.render_chat import CHAT, make_chat_render_pass
from dsc.compiler.dedup.passes import (
    SIGNATURE,
    TEXT,
    VALIDATION,
    Duplicates,
    deduplicate,
    make_signature_pass,
    signature_matrix,
    signature_schema,
)
from dsc.compiler.derive import make_derive_pass
from dsc.compiler.encode import IGNORE, make_encode_pass
from dsc.compiler.engine import Engine, chunk_rows, make_engine
from dsc.compiler.engine.spill import RowFile, Spill, TextFile, Workspace
from dsc.compiler.errors import Problem, RecordError
from dsc.compiler.render import SEGMENTS, make_render_pass
from dsc.compiler.sources import RAW_SCHEMA, SourceStream
from dsc.compiler.spec import Spec
from dsc.compiler.split import KEY, make_split_key_pass, validation_mask, validation_size, validation_wanted
from dsc.compiler.tokenizer import LoadedTokenizer, load_tokenizer
from dsc.compiler.validate import arrow_type, make_validate_pass

if TYPE_CHECKING:
    import datasets

SHOWN_ERRORS = 10

PACKAGE_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("labels", pa.list_(pa.int32())),
        pa.field("prompt", pa.string()),
        pa.field("response", pa.string()),
        pa.field("source_id", pa.string()),
    ]
)
"""The columns of every package split, in order."""


def package_features() -> dict[str, Any]:
    """The split columns as Hugging Face `Features.to_dict()` writes them (the Parquet shards' `huggingface` metadata),
    spelled out here so a build never imports `datasets` (~0.8 s per process)."""
    return {field.name: _feature(field.type) for field in PACKAGE_SCHEMA}


def _feature(kind: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(kind):
        return {"feature": _feature(kind.value_type), "_type": "List"}
    return {"dtype": str(kind), "_type": "Value"}


def package_features_yaml() -> list[dict[str, str]]:
    """The split columns as a dataset card's `dataset_info.features` lists them."""
    return [
        {"name": f.name, "list": str(f.type.value_type)} if pa.types.is_list(f.type) else {"name": f.name, "dtype": str(f.type)}
        for f in PACKAGE_SCHEMA
    ]


@dataclass
class Options:
    """Run-time knobs that are not part of the spec."""

    limit: int | None = None
    num_proc: int | None = None
    """Worker processes (None: every core; used only when the input spans more than one chunk)."""
    engine: str = "local"
    """Where the passes run: `local` or `ray` (`dsc.compiler.engine`)."""


@dataclass
class Rendered:
    """Records that passed validation and rendering (on disk, in `spill`), and what happened on the way."""

    spill: Spill
    read: int
    invalid: Counter[str]
    inputs: list[dict[str, Any]]
    keys: np.ndarray
    """Each kept record's split key, in order."""
    workspace: Workspace
    audit: Trail
    """Every record that did not go in as it came (`dsc.compiler.audit`), on disk."""
    signatures: pa.Table | None = None
    """Dedup's per-record columns (where each record came from, exact key, length, keep value), when the render asked
    for them (and the spec has a `dedup:` section)."""
    signature_rows: RowFile | None = None
    """Dedup's MinHash signatures, num_perm uint32 per record, on disk (with `near`)."""
    compared: TextFile | None = None
    """The text dedup compared of each record, on disk (with `near`): the few pairs measured exactly read it."""

    def __len__(self) -> int:
        return self.spill.rows

    def __enter__(self) -> Rendered:
        return self

    def __exit__(self, *exc: object) -> None:
        """`with render(...) as rendered:` removes the workspace (these spills, and the splits a tokenize made from
        them) when the caller is done, not when the garbage collector gets to it."""
        self.workspace.close()


@dataclass
class Compiled:
    """The splits of a finished build, ready for the package builder."""

    spec: Spec
    tokenizer: LoadedTokenizer
    spills: dict[str, Spill]
    """Each split, in the build's workspace (which lives as long as this object): readers that walk a whole split take
    it a slice at a time (`Spill.walk`), so the pages they read do not pile up in this process."""
    counts: dict[str, Any]
    inputs: list[dict[str, Any]]
    audit: Trail
    """Every record that did not go in as it came (`dsc.compiler.audit`): the render's trail, added to."""
    tokens: dict[str, Any] = field(default_factory=dict)
    duplicates: Duplicates | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase. Shown by `dsc build`, never written into the package: a package must not differ between two
    builds of the same spec and data."""
    workspace: Workspace | None = None

    def close(self) -> None:
        """Remove the build's workspace now (not when this object is collected): `spills` and `splits` go with it."""
        if self.workspace is not None:
            self.workspace.close()

    @property
    def splits(self) -> dict[str, datasets.Dataset]:
        """Each split as a memory-mapped `datasets.Dataset`, for callers that want one (the build itself reads
        `spills` and never imports `datasets`)."""
        return {name: spill.dataset() for name, spill in self.spills.items()}


class _Errors:
    """The first located errors of a phase (fatal ones: `on_invalid: error`, `overflow: error`), and how many."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.total = 0

    def add(self, column: pa.ChunkedArray | pa.Array) -> None:
        found = len(column) - column.null_count
        if found:
            room = SHOWN_ERRORS - len(self.shown)
            self.shown += column.drop_null().slice(0, room).to_pylist() if room > 0 else []
            self.total += found

    def raise_if_any(self, what: str) -> None:
        if self.total:
            problems = [Problem(m) for m in self.shown]
            raise RecordError(problems + [Problem(f"{self.total} record(s) {what}")], total=self.total + 1)


def _drop_counts(table: pa.Table) -> Counter[str]:
    """How many rows each drop reason removed."""
    counts = pc.value_counts(table.column(DROP).drop_null())
    return Counter({v["values"].as_py(): v["counts"].as_py() for v in counts})


def _kept(table: pa.Table) -> pa.Table:
    """The rows no pass dropped (no copy when none was)."""
    if table.column(DROP).null_count != len(table):
        table = table.filter(pc.is_null(table.column(DROP)))
    return table


def _render_pass(spec: Spec, tokenizer: LoadedTokenizer | None) -> Pass:
    """The spec's templates, or for conversations the chat template (which comes with the tokenizer)."""
    if spec.chat is None:
        return make_render_pass(spec)
    tmpl = load_chat_template(spec.chat, tokenizer or load_tokenizer(spec.tokenizer, spec), spec.where)
    return make_chat_render_pass(spec.chat, tmpl, {f.name for f in spec.fields if f.stored_as_json})


def _dedup_table(schema: pa.Schema, dedup_schema: pa.Schema, parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables([_dedup_columns(schema.empty_table(), dedup_schema), *parts])


def _dedup_columns(chunk: pa.Table, schema: pa.Schema) -> pa.Table:
    """What dedup's global step keeps in memory of a rendered chunk: where each record came from (`_file`
    dictionary-encoded) and the signature pass's numbers."""
    part = chunk.select([*BOOKKEEPING, *(n for n in schema.names if n not in (SIGNATURE, TEXT))])
    return part.set_column(1, "_file", part.column("_file").dictionary_encode())


def _render_schema(spec: Spec) -> pa.Schema:
    fields = [pa.field(name, t) for name, t in zip(RAW_SCHEMA.names, RAW_SCHEMA.types, strict=True) if name != "_record"]
    fields += [pa.field(field_column(f.name), arrow_type(f)) for f in spec.fields]
    fields += [pa.field(field_column(d.name), pa.string()) for d in spec.derived]
    fields += [pa.field("prompt", pa.string()), pa.field("response", pa.string())]
    if spec.labels.turns == "all":
        fields.append(pa.field(SEGMENTS, pa.list_(pa.string())))
    if spec.chat is not None:
        fields.append(pa.field(CHAT, pa.large_string()))
    fields.append(pa.field(KEY, pa.int64()))
    return pa.schema(fields)


def render(
    spec: Spec, options: Options, tokenizer: LoadedTokenizer | None = None, *, signatures: bool = False, engine: Engine | None = None
) -> Rendered:
    """Read, validate, derive and render every record, streaming (no tokenizer needed but for conversations: `dsc
    validate` stops here). The kept records go to a spill file; with `signatures` (and a `dedup:` section) dedup's
    per-record columns are computed in the same pass and kept in memory for its global step."""
    schema = _render_schema(spec)
    passes = [make_validate_pass(spec), make_derive_pass(spec), _render_pass(spec, tokenizer), make_split_key_pass(spec.split)]
    dedup_schema = signature_schema(spec) if signatures and spec.dedup is not None else None
    if dedup_schema is not None:
        passes.append(make_signature_pass(spec))
    marks = [pa.field(DROP, pa.string()), pa.field(ERROR, pa.string()), pa.field(DETAIL, pa.string())]
    out_schema = pa.schema([*schema, *(dedup_schema or []), *marks])
    stream = SourceStream(spec, options.limit, chunk_rows())  # settings checked before a folder or a worker is made
    own = engine is None
    engine = engine or make_engine(options.engine, options.num_proc)
    workspace = Workspace()
    near = spec.dedup.near if dedup_schema is not None and spec.dedup is not None else None
    signature_rows = workspace.rows("signatures.u32", np.uint32, near.num_perm) if near is not None else None
    compared = workspace.texts("compared.txt") if near is not None else None
    spill = workspace.spill("rendered", schema)
    errors, invalid, trail, keys, dedup_parts = _Errors(), Counter[str](), Trail(workspace), [], []
    try:
        for chunk in engine.map(stream, chain(*passes), out_schema, frozenset({"_record"}), "validate + render"):
            if spec.on_invalid == "error":
                errors.add(chunk.column(ERROR))
            invalid.update(_drop_counts(chunk))
            trail.add(dropped_rows(chunk, "invalid"))
            chunk = _kept(chunk)
            spill.write(chunk)
            keys.append(chunk.column(KEY).to_numpy())
            if dedup_schema is not None:
                if signature_rows is not None and compared is not None:
                    for array in chunk.column(SIGNATURE).chunks:
                        signature_rows.append(signature_matrix(array, signature_rows.width))
                    for array in chunk.column(TEXT).chunks:
                        compared.append(array)
                dedup_parts.append(_dedup_columns(chunk, dedup_schema))
    finally:
        if own:
            engine.close()
    errors.raise_if_any("failed validation or rendering (on_invalid: error; set on_invalid: skip to drop them)")
    return Rendered(
        spill=spill.close(),
        read=stream.read,
        invalid=invalid,
        inputs=stream.inputs,
        keys=np.concatenate(keys) if keys else np.zeros(0, np.int64),
        workspace=workspace,
        audit=trail,
        signatures=None if dedup_schema is None else _dedup_table(out_schema, dedup_schema, dedup_parts),
        signature_rows=signature_rows,
        compared=compared,
    )


class _TokenTally:
    """A split's token counts, added up chunk by chunk as the tokenize phase writes it (the split is never read back
    whole to count them)."""

    def __init__(self) -> None:
        self.lengths: list[np.ndarray] = []
        self.trainable = 0

    def add(self, table: pa.Table) -> None:
        if len(table):
            self.lengths.append(pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int32))
            self.trainable += int(pc.sum(pc.not_equal(pc.list_flatten(table.column("labels")), IGNORE)).as_py() or 0)

    def stats(self) -> dict[str, Any]:
        if not self.lengths:
            return {"records": 0, "tokens": 0, "trainable": 0}
        lengths = np.concatenate(self.lengths)
        tokens = int(lengths.sum(dtype=np.int64))
        return {"records": len(lengths), "tokens": tokens, "trainable": self.trainable, "length": quantiles(lengths)}


def quantiles(values: np.ndarray) -> dict[str, float]:
    """min, mean, p50, p95, max of token lengths, as the manifest, the card and the report show them (empty: zeros)."""
    if not len(values):
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 1),
        "p50": int(np.percentile(values, 50)),
        "p95": int(np.percentile(values, 95)),
        "max": int(values.max()),
    }


TOKENIZE_INPUT = [*BOOKKEEPING, "prompt", "response", SEGMENTS, CHAT]
"""What the tokenize phase reads of the rendered records (the field columns stay on disk)."""


def _tokenize_chunks(rendered: Rendered, keep: np.ndarray | None, validation: np.ndarray) -> Iterator[pa.Table]:
    """The rendered records dedup kept, a chunk at a time, each with its split (`_validation`)."""
    start = 0
    for chunk in rendered.spill.chunks():
        end = start + len(chunk)
        chunk = chunk.select([c for c in TOKENIZE_INPUT if c in chunk.column_names])
        chunk = chunk.append_column(VALIDATION, pa.array(validation[start:end]))
        if keep is not None and not keep[start:end].all():
            chunk = chunk.filter(pa.array(keep[start:end]))
        start = end
        if len(chunk):
            yield chunk


def tokenize(
    spec: Spec,
    rendered: Rendered,
    tok: LoadedTokenizer,
    options: Options,
    *,
    keep: np.ndarray | None = None,
    validation: np.ndarray | None = None,
    engine: Engine | None = None,
) -> Compiled:
    """Tokenize and apply lengths and labels to the rendered records, streaming each into its split's spill.

    `keep` and `validation` (one flag per rendered record) come from dedup, which decides the split itself; without
    them the split is decided here from the split keys."""
    own = engine is None
    engine = engine or make_engine(options.engine, options.num_proc)
    if validation is None:
        validation = validation_mask(rendered.keys, spec.split)
    chat = spec.chat is not None
    schema = pa.schema(
        [
            *(pa.field(n, t) for n, t in zip(RAW_SCHEMA.names, RAW_SCHEMA.types, strict=True) if n != "_record"),
            pa.field("prompt", pa.string()),
            pa.field("response", pa.string()),
            pa.field(VALIDATION, pa.bool_()),
            pa.field("input_ids", pa.list_(pa.int32())),
            pa.field("labels", pa.list_(pa.int32())),
            pa.field("_truncated", pa.bool_()),
            pa.field("_drift", pa.bool_()),
            *([pa.field("_span_fallback", pa.bool_())] if chat else []),
            pa.field(DROP, pa.string()),
            pa.field(ERROR, pa.string()),
            pa.field(DETAIL, pa.string()),
        ]
    )
    if chat:
        encode_pass = make_chat_encode_pass(tok, load_chat_template(spec.chat, tok, spec.where), spec.lengths)
    else:
        encode_pass = make_encode_pass(spec, tok)
    spills = {name: rendered.workspace.spill(name, PACKAGE_SCHEMA) for name in ("train", "validation")}
    tallies = {name: _TokenTally() for name in spills}
    errors = _Errors()
    dropped, trail = Counter[str](), rendered.audit
    truncated = drift = fallback = 0
    try:
        chunks = _tokenize_chunks(rendered, keep, validation)
        for chunk in engine.map(chunks, encode_pass, schema, frozenset({SEGMENTS, CHAT}), "tokenize", threaded=True):
            errors.add(chunk.column(ERROR))
            dropped.update(_drop_counts(chunk))
            cut = pc.fill_null(chunk.column("_truncated"), False)
            trail.add(dropped_rows(chunk, "dropped"))
            trail.add(marked(chunk, cut, "truncated", "truncated"))
            chunk = _kept(chunk)
            truncated += int(pc.sum(chunk.column("_truncated")).as_py() or 0)
            drift += int(pc.sum(chunk.column("_drift")).as_py() or 0)
            if chat:
                fallback += int(pc.sum(chunk.column("_span_fallback")).as_py() or 0)
            chunk = chunk.append_column("source_id", source_ids(chunk.column("_file"), chunk.column("_row")))
            to_validation = chunk.column(VALIDATION)
            for name, part in (("train", chunk.filter(pc.invert(to_validation))), ("validation", chunk.filter(to_validation))):
                spills[name].write(part)
                tallies[name].add(part)
    finally:
        if own:
            engine.close()
    errors.raise_if_any("longer than the spec's lengths allow (overflow: error)")
    written = {name: spill.close() for name, spill in spills.items() if name == "train" or spill.rows}
    tokens = {name: tallies[name].stats() for name in written}
    total = sum(t["tokens"] for t in tokens.values())
    trained = sum(t["trainable"] for t in tokens.values())
    counts = {
        "read": rendered.read,
        "invalid": dict(rendered.invalid),
        "dropped": dict(dropped),
        "truncated": truncated,
        "boundary_drift": drift,
        **({"span_fallback": fallback} if chat else {}),
        "kept": {name: spill.rows for name, spill in written.items()},
    }
    tokens["total"] = {"tokens": total, "trainable": trained, "trainable_share": round(trained / total, 4) if total else 0.0}
    return Compiled(
        spec=spec,
        tokenizer=tok,
        spills=written,
        counts=counts,
        inputs=rendered.inputs,
        tokens=tokens,
        audit=trail,
        workspace=rendered.workspace,
    )


def compile_spec(spec: Spec, options: Options | None = None, tokenizer: LoadedTokenizer | None = None) -> Compiled:
    """The whole build minus writing: what `dsc build` hands to the package builder."""
    options = options or Options()
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    if spec.chat is not None:  # a conversation renders with the tokenizer's chat template
        tokenizer = tokenizer or load_tokenizer(spec.tokenizer, spec)
    engine = make_engine(options.engine, options.num_proc)
    try:
        rendered = render(spec, options, tokenizer, signatures=True, engine=engine)
        valid = len(rendered)
        _require_records(spec, rendered)
        tok = tokenizer or load_tokenizer(spec.tokenizer, spec)
        lap("read + render")
        if spec.dedup is None:
            compiled = tokenize(spec, rendered, tok, options, engine=engine)
            lap("tokenize")
        else:
            duplicates = deduplicate(spec, rendered, engine)
            lap("dedup")
            compiled = tokenize(spec, rendered, tok, options, keep=duplicates.keep_mask(), validation=duplicates.validation, engine=engine)
            lap("tokenize")
            compiled.duplicates = duplicates
            compiled.counts["dropped"] = {**duplicates.reasons(), **compiled.counts["dropped"]}
            compiled.counts["duplicates"] = duplicates.counts
    finally:
        engine.close()
    _require_splits(spec, compiled, valid)
    compiled.timings = timings
    return compiled


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _require_records(spec: Spec, rendered: Rendered) -> None:
    """A build with nothing to build is an error (a package with no rows cannot be loaded), as is a validation count
    that leaves nothing to train on; raised before the tokenizer loads, so no package is written or replaced."""
    valid = len(rendered)
    if rendered.read == 0:
        names = ", ".join(str(i.get("path") or f"hub:{i.get('hub')}") for i in rendered.inputs) or "the sources"
        raise RecordError(Problem(f"sources: no records to build in {names} (empty, or only blank lines)", spec.where("sources")))
    if valid == 0:
        raise RecordError(
            Problem(
                f"on_invalid: all {rendered.read} record(s) were skipped as invalid, nothing left to build ({_reasons(rendered.invalid)})",
                spec.where("on_invalid"),
            )
        )
    wanted = validation_wanted(spec.split, valid)
    if wanted and wanted >= valid:
        raise RecordError(
            Problem(
                f"split.validation: {spec.split.validation} asks for {wanted} validation record(s) of the {valid} valid "
                "one(s), which leaves no training records; ask for fewer",
                spec.where("split", "validation"),
            )
        )


def _require_splits(spec: Spec, compiled: Compiled, valid: int) -> None:
    """Every split the build meant to write must keep records after the drops (lengths, dedup)."""
    kept, dropped = compiled.counts["kept"], compiled.counts["dropped"]
    if not kept.get("train"):
        raise RecordError(
            Problem(f"no training records left: every one was dropped ({_reasons(dropped)}); nothing left to train on", spec.where())
        )
    if validation_size(spec.split, valid) and not kept.get("validation"):
        raise RecordError(
            Problem(
                f"split.validation: every validation record was dropped ({_reasons(dropped)}); the split would be empty",
                spec.where("split", "validation"),
            )
        )
