"""The `dedup:` section of a format spec, resolved into frozen settings.

The JSON Schema has already checked shapes and ranges; what is left here is what needs the rest of the spec (which fields
exist, which ones the templates use) and the defaults, so the rest of the build never sees a raw dict.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dsc.compiler.errors import SpecError
from dsc.compiler.yaml_lines import KeyPath

PROMPT = "prompt"
RESPONSE = "response"
RENDERED = ("rendered_prompt", "rendered_response")


@dataclass(frozen=True)
class Normalize:
    """What two texts may differ in and still count as the same text (each True folds that difference away)."""

    nfkc: bool = True
    case: bool = True
    whitespace: bool = True
    punctuation: bool = True


@dataclass(frozen=True)
class Near:
    """MinHash + LSH settings. `bands` x `rows` <= `num_perm`; None means "derived from the threshold"."""

    shingles: str = "auto"
    ngram: int = 2
    num_perm: int = 128
    threshold: float = 0.75
    bands: int | None = None
    rows: int | None = None
    seed: int = 1


@dataclass(frozen=True)
class Keep:
    """Which record of a cluster stays: `first`, `longest`, or the `max`/`min` of a numeric `field`."""

    rule: str = "first"
    field: str | None = None


@dataclass(frozen=True)
class DedupSpec:
    """Resolved `dedup:`. `compare` names record columns (fields, derived fields) or the rendered prompt/response."""

    compare: tuple[str, ...]
    exact: bool
    near: Near | None
    normalize: Normalize
    keep: Keep
    scope: str = "dataset"

    @property
    def label(self) -> str:
        """`compare` as the spec would write it, for messages and the manifest."""
        return "+".join(self.compare)


Fail = Callable[[KeyPath, str], SpecError]


def _unknown(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown name '{name}'{hint}; use {', '.join(allowed)}"


def _resolve_compare(
    raw: str | list[str], variables: list[str], prompt_vars: Iterable[str], response_vars: Iterable[str], fail: Fail
) -> tuple[str, ...]:
    """Expand `prompt`/`response` into the fields their templates use; keep field names and rendered texts as they are.

    A field of the same name wins over the keyword: a spec whose records have a `prompt` field compares that field."""
    names = raw.split("+") if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for i, name in enumerate(n.strip() for n in names):
        path: KeyPath = ("dedup", "compare") if isinstance(raw, str) else ("dedup", "compare", i)
        if name in variables or name in RENDERED:
            picked = [name]
        elif name == PROMPT:
            picked = [v for v in variables if v in set(prompt_vars)]
        elif name == RESPONSE:
            picked = [v for v in variables if v in set(response_vars)]
        else:
            raise fail(path, _unknown(name, [PROMPT, RESPONSE, *RENDERED, *variables]))
        out += [p for p in picked if p not in out]
    if not out:
        raise fail(("dedup", "compare"), "names no text to compare (the template uses no field)")
    return tuple(out)


def parse_dedup(
    raw: dict[str, Any] | bool,
    variables: list[str],
    numeric: list[str],
    prompt_vars: Iterable[str],
    response_vars: Iterable[str],
    fail: Fail,
) -> DedupSpec:
    """Resolve a schema-checked `dedup:` mapping (`true` means all defaults); `numeric` are the fields that
    `keep: {max|min: field}` may name."""
    raw = {} if raw is True else raw
    assert isinstance(raw, dict)
    compare = _resolve_compare(raw.get("compare", PROMPT), variables, prompt_vars, response_vars, fail)
    near_raw = raw.get("near", True)
    near = None
    if near_raw is not False:
        near_raw = {} if near_raw is True else near_raw
        near = Near(**{k: v for k, v in near_raw.items()})
        if (near.bands is None) != (near.rows is None):
            raise fail(("dedup", "near"), "give both bands and rows, or neither (then the threshold picks them)")
        if near.bands is not None and near.rows is not None and near.bands * near.rows > near.num_perm:
            raise fail(("dedup", "near", "bands"), f"bands x rows = {near.bands * near.rows} exceeds num_perm {near.num_perm}")
        if near.bands is None:
            from dsc.compiler.dedup.lsh import band_shape  # here: lsh imports minhash, which imports this module

            try:
                band_shape(near.threshold, near.num_perm)
            except ValueError:
                raise fail(("dedup", "near", "threshold"), f"threshold {near.threshold} with num_perm {near.num_perm} leaves fewer than 2 "
                           "LSH bands; lower the threshold, raise num_perm, or give bands and rows") from None
    exact = raw.get("exact", True)
    if not exact and near is None:
        raise fail(("dedup",), "exact and near are both off: remove the dedup section instead")
    keep_raw = raw.get("keep", "first")
    keep = Keep(rule=keep_raw)
    if isinstance(keep_raw, dict):
        rule, field = next(iter(keep_raw.items()))
        if field not in numeric:
            known = f"numeric fields are {', '.join(numeric)}" if numeric else "the spec declares none"
            what = f"'{field}' is not an integer or number field" if field in variables else _unknown(field, numeric)
            raise fail(("dedup", "keep", rule), f"{what}; {known}")
        keep = Keep(rule=rule, field=field)
    return DedupSpec(
        compare=compare,
        exact=bool(exact),
        near=near,
        normalize=Normalize(**(raw.get("normalize") or {})),
        keep=keep,
        scope=raw.get("scope", "dataset"),
    )
