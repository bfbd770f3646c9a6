"""The build pipeline: sources -> validate/derive/render -> dedup (when the spec asks) -> tokenize/split -> splits, counts.

Each phase is one run of chained passes over the whole set (`dsc.compiler.engine`: Arrow batches in one process, or
`datasets.map` workers); between phases the rows marked dropped are counted and filtered, and records that must fail
the build (bad records under `on_invalid: error`, over-long ones under `overflow: error`) raise a RecordError listing
the first of them with their locations. Dedup's global step sits between render and tokenize.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.compiler import engine
from dsc.compiler.audit import dropped_rows, marked, no_audit
from dsc.compiler.batch import BOOKKEEPING, DETAIL, DROP, ERROR, Pass, chain, field_column
from dsc.compiler.chat.chat_template import load_chat_template
from dsc.compiler.chat.encode_chat import make_chat_encode_pass
from dsc.compiler.chat.render_chat import CHAT, make_chat_render_pass
from dsc.compiler.dedup.passes import VALIDATION, Duplicates, deduplicate
from dsc.compiler.derive import make_derive_pass
from dsc.compiler.encode import IGNORE, make_encode_pass
from dsc.compiler.errors import Problem, RecordError
from dsc.compiler.render import SEGMENTS, make_render_pass
from dsc.compiler.sources import read_sources
from dsc.compiler.spec import Spec
from dsc.compiler.split import KEY, make_split_key_pass, validation_mask, validation_size, validation_wanted
from dsc.compiler.tokenizer import LoadedTokenizer, load_tokenizer
from dsc.compiler.validate import arrow_type, make_validate_pass

SHOWN_ERRORS = 10

PACKAGE_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "labels": datasets.List(datasets.Value("int32")),
        "prompt": datasets.Value("string"),
        "response": datasets.Value("string"),
        "source_id": datasets.Value("string"),
    }
)
"""The columns of every package split, in order."""


@dataclass
class Options:
    """Run-time knobs that are not part of the spec."""

    limit: int | None = None
    num_proc: int | None = None


@dataclass
class Rendered:
    """Records that passed validation and rendering, and what happened on the way."""

    dataset: datasets.Dataset
    read: int
    invalid: Counter[str]
    inputs: list[dict[str, Any]]
    audit: pa.Table = field(default_factory=no_audit)


@dataclass
class Compiled:
    """The splits of a finished build, ready for the package builder."""

    spec: Spec
    tokenizer: LoadedTokenizer
    splits: dict[str, datasets.Dataset]
    counts: dict[str, Any]
    inputs: list[dict[str, Any]]
    tokens: dict[str, Any] = field(default_factory=dict)
    duplicates: Duplicates | None = None
    audit: pa.Table = field(default_factory=no_audit)
    """Every record that did not go in as it came (`dsc.compiler.audit`), unsorted."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase. Shown by `dsc build`, never written into the package: a package must not differ between two
    builds of the same spec and data."""


def _raise_errors(ds: datasets.Dataset, what: str) -> None:
    shown, total = engine.first_errors(ds, SHOWN_ERRORS)
    if total:
        problems = [Problem(m) for m in shown]
        raise RecordError(problems + [Problem(f"{total} record(s) {what}")], total=total + 1)


def _render_pass(spec: Spec, tokenizer: LoadedTokenizer | None) -> Pass:
    """The spec's templates, or for conversations the chat template (which comes with the tokenizer)."""
    if spec.chat is None:
        return make_render_pass(spec)
    tmpl = load_chat_template(spec.chat, tokenizer or load_tokenizer(spec.tokenizer, spec), spec.where)
    return make_chat_render_pass(spec.chat, tmpl, {f.name for f in spec.fields if f.stored_as_json})


def render(spec: Spec, options: Options, tokenizer: LoadedTokenizer | None = None) -> Rendered:
    """Read, validate, derive and render every record (no tokenizer needed but for conversations: `dsc validate`
    stops here)."""
    read = read_sources(spec, options.limit)
    ds = engine.from_table(read.table)
    features = datasets.Features(dict(ds.features))
    del features["_record"]
    for f in spec.fields:
        features[field_column(f.name)] = _value(arrow_type(f))
    for d in spec.derived:
        features[field_column(d.name)] = datasets.Value("string")
    features["prompt"] = datasets.Value("string")
    features["response"] = datasets.Value("string")
    if spec.labels.turns == "all":
        features[SEGMENTS] = datasets.List(datasets.Value("string"))
    if spec.chat is not None:
        features[CHAT] = datasets.Value("large_string")
    features[KEY] = datasets.Value("int64")
    features[DROP] = datasets.Value("string")
    features[ERROR] = datasets.Value("string")
    features[DETAIL] = datasets.Value("string")
    passes = chain(make_validate_pass(spec), make_derive_pass(spec), _render_pass(spec, tokenizer), make_split_key_pass(spec.split))
    ds = engine.apply(ds, passes, desc="validate + render", features=features, remove_columns=["_record"], num_proc=options.num_proc)
    if spec.on_invalid == "error":
        _raise_errors(ds, "failed validation or rendering (on_invalid: error; set on_invalid: skip to drop them)")
    invalid = engine.reasons(ds)
    return Rendered(
        dataset=engine.kept(ds, [DROP, ERROR, DETAIL]),
        read=len(read.table),
        invalid=invalid,
        inputs=read.inputs,
        audit=dropped_rows(ds.data.table, "invalid"),
    )


def _value(arrow: pa.DataType) -> datasets.Value:
    names = {pa.string(): "string", pa.large_string(): "large_string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}
    return datasets.Value(names[arrow])


def _token_stats(ds: datasets.Dataset) -> dict[str, Any]:
    table = ds.data.table
    if len(table) == 0:
        return {"records": 0, "tokens": 0, "trainable": 0}
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy()
    labels = pc.list_flatten(table.column("labels"))
    trainable = int(pc.sum(pc.not_equal(labels, IGNORE)).as_py() or 0)
    return {
        "records": len(table),
        "tokens": int(lengths.sum()),
        "trainable": trainable,
        "length": quantiles(lengths),
    }


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


def _source_ids(table: pa.Table) -> pa.Array:
    names = pc.replace_substring_regex(table.column("_file"), pattern=r"^.*/", replacement="")
    rows = pc.cast(table.column("_row"), pa.string())
    return pc.binary_join_element_wise(names, rows, "#")


def _split_order(table: pa.Table, spec: Spec) -> tuple[pa.Table, int]:
    """The rendered rows reordered train first, validation after, and the number of train rows.

    Splitting before tokenizing costs one copy of the text; afterwards each split is a zero-copy slice of the
    tokenized table, which is several times larger."""
    if VALIDATION in table.column_names:  # dedup split the records already; splitting again could leak copies
        to_validation = table.column(VALIDATION).to_numpy(zero_copy_only=False)
    else:
        to_validation = validation_mask(table.column(KEY).to_numpy(), spec.split)
    if not to_validation.any():
        return table, len(table)
    order = np.concatenate([np.flatnonzero(~to_validation), np.flatnonzero(to_validation)])
    return table.take(pa.array(order)), int((~to_validation).sum())


def tokenize(spec: Spec, rendered: Rendered, tok: LoadedTokenizer, options: Options) -> Compiled:
    """Split, then tokenize and apply lengths and labels to the rendered records (which this consumes)."""
    # The tokenize phase needs only the rendered text and the bookkeeping; fields stay behind (less to convert).
    needed = [*BOOKKEEPING, "prompt", "response", SEGMENTS, CHAT, KEY, VALIDATION]
    table = rendered.dataset.data.table
    table = table.select([c for c in needed if c in table.column_names])
    rendered.dataset = engine.from_table(table.slice(0, 0))  # consumed: the field columns are freed from here on
    table, n_train = _split_order(table, spec)
    ds = engine.from_table(table)
    del table
    features = datasets.Features(dict(ds.features))
    features.pop(SEGMENTS, None)
    features.update(
        {
            "input_ids": datasets.List(datasets.Value("int32")),
            "labels": datasets.List(datasets.Value("int32")),
            "_truncated": datasets.Value("bool"),
            "_drift": datasets.Value("bool"),
            **({"_span_fallback": datasets.Value("bool")} if spec.chat is not None else {}),
            DROP: datasets.Value("string"),
            ERROR: datasets.Value("string"),
            DETAIL: datasets.Value("string"),
        }
    )
    features.pop(KEY, None)
    features.pop(VALIDATION, None)
    features.pop(CHAT, None)
    remove = [c for c in (SEGMENTS, CHAT, KEY, VALIDATION) if c in ds.column_names]
    if spec.chat is None:
        encode_pass = make_encode_pass(spec, tok)
    else:
        encode_pass = make_chat_encode_pass(tok, load_chat_template(spec.chat, tok, spec.where), spec.lengths)
    ds = engine.apply(
        ds,
        encode_pass,
        desc="tokenize",
        features=features,
        remove_columns=remove,
        num_proc=options.num_proc,
        batch_size=2000,
    )
    _raise_errors(ds, "longer than the spec's lengths allow (overflow: error)")
    dropped = engine.reasons(ds)
    table = ds.data.table
    del ds
    drop_column = table.column(DROP)
    n_train -= drop_column.slice(0, n_train).drop_null().length() if drop_column.null_count != len(table) else 0
    cut = pc.fill_null(table.column("_truncated"), False)
    trail = [rendered.audit, dropped_rows(table, "dropped"), marked(table, cut, "truncated", "truncated")]
    table = engine.kept_table(table, [DROP, ERROR, DETAIL])
    truncated = int(pc.sum(table.column("_truncated")).as_py() or 0)
    drift = int(pc.sum(table.column("_drift")).as_py() or 0)
    chat_counts = {"span_fallback": int(pc.sum(table.column("_span_fallback")).as_py() or 0)} if spec.chat is not None else {}
    table = table.append_column("source_id", _source_ids(table)).select(list(PACKAGE_FEATURES))
    splits = {"train": engine.from_table(table.slice(0, n_train))}
    if n_train < len(table):
        splits["validation"] = engine.from_table(table.slice(n_train))
    tokens = {name: _token_stats(split) for name, split in splits.items()}
    total = sum(t["tokens"] for t in tokens.values())
    trained = sum(t["trainable"] for t in tokens.values())
    counts = {
        "read": rendered.read,
        "invalid": dict(rendered.invalid),
        "dropped": dict(dropped),
        "truncated": truncated,
        "boundary_drift": drift,
        **chat_counts,
        "kept": {name: len(split) for name, split in splits.items()},
    }
    tokens["total"] = {"tokens": total, "trainable": trained, "trainable_share": round(trained / total, 4) if total else 0.0}
    return Compiled(
        spec=spec, tokenizer=tok, splits=splits, counts=counts, inputs=rendered.inputs, tokens=tokens, audit=pa.concat_tables(trail)
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
    rendered = render(spec, options, tokenizer)
    valid = len(rendered.dataset)
    _require_records(spec, rendered)
    tok = tokenizer or load_tokenizer(spec.tokenizer, spec)
    lap("read + render")
    if spec.dedup is None:
        compiled = tokenize(spec, rendered, tok, options)
        lap("tokenize")
    else:
        rendered.dataset, duplicates = deduplicate(spec, rendered.dataset, options.num_proc)
        lap("dedup")
        compiled = tokenize(spec, rendered, tok, options)
        lap("tokenize")
        compiled.duplicates = duplicates
        compiled.audit = pa.concat_tables([compiled.audit, duplicates.audit])
        compiled.counts["dropped"] = {**duplicates.reasons(), **compiled.counts["dropped"]}
        compiled.counts["duplicates"] = duplicates.counts
    _require_splits(spec, compiled, valid)
    compiled.timings = timings
    return compiled


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _require_records(spec: Spec, rendered: Rendered) -> None:
    """A build with nothing to build is an error (a package with no rows cannot be loaded), as is a validation count
    that leaves nothing to train on; raised before the tokenizer loads, so no package is written or replaced."""
    valid = len(rendered.dataset)
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
