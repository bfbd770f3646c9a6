"""The validate pass: parse each raw record, rename columns, fill defaults, check it against the fields' JSON Schema.

A record that fails gets `_drop = "invalid: <reason>"` (reasons are counted in the manifest) and a located `_error`.
Valid records come out as typed columns, one per field.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

import jsonschema
import pyarrow as pa
from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, field_column, location, size
from dsc.compiler.sources import unreadable_reason
from dsc.compiler.spec import MISSING, FieldSpec, Spec

INT64 = (-(2**63), 2**63 - 1)
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")

_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "array": "array", "object": "object"}
_ARROW_TYPES = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


def field_schema(f: FieldSpec) -> dict[str, Any]:
    """The JSON Schema of one field's value."""
    schema: dict[str, Any] = {}
    if f.type in _JSON_TYPES:
        schema["type"] = _JSON_TYPES[f.type]
        if not f.required and f.default is MISSING:
            schema["type"] = [schema["type"], "null"]
    if f.items is not None:
        schema["items"] = field_schema(f.items)
    if f.enum is not None:
        schema["enum"] = list(f.enum)
    if f.min_length is not None:
        schema["minLength" if f.type == "string" else "minItems"] = f.min_length
    return schema


def record_schema(spec: Spec) -> dict[str, Any]:
    """The JSON Schema every record is checked against: the spec's fields, required ones listed."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {f.name: field_schema(f) for f in spec.fields},
        "required": [f.name for f in spec.fields if f.required],
    }


def arrow_type(f: FieldSpec) -> pa.DataType:
    """How a field is stored between passes: scalars natively, arrays/objects/any as JSON text."""
    return pa.large_string() if f.stored_as_json else _ARROW_TYPES[f.type]


def _reason(error: jsonschema.ValidationError) -> tuple[str, str | None, str]:
    """(counted reason, field, message) for one schema error."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"missing field '{missing}'", missing, "required field is missing"
    name = str(path[0]) if path else None
    where = "".join(f"[{p}]" for p in path[1:])
    if error.validator == "type":
        got = type(error.instance).__name__ if error.instance is not None else "null"
        expected = error.validator_value if isinstance(error.validator_value, str) else error.validator_value[0]
        return f"{name}: wrong type", name, f"{where + ': ' if where else ''}expected {expected}, got {got}: {_short(error.instance)}"
    return f"{name}: {error.validator}", name, f"{where + ': ' if where else ''}{error.message}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def quick_check(fields: tuple[FieldSpec, ...]) -> Callable[[dict[str, Any]], bool] | None:
    """A plain-Python check that accepts exactly what the record schema accepts, for specs whose fields have only a
    type (no items, enum or min_length); None otherwise. It saves the JSON Schema walk on the common, valid record;
    any record it rejects still goes through jsonschema, which is the authority for every error reported."""
    if any(f.items is not None or f.enum is not None or f.min_length is not None for f in fields):
        return None
    plain = [(f.name, _PY_TYPES.get(f.type), f.required, not f.required and f.default is MISSING) for f in fields]

    def check(record: dict[str, Any]) -> bool:
        for name, types, required, nullable in plain:
            if name not in record:
                if required:
                    return False
                continue
            value = record[name]
            if types is None or (value is None and nullable):
                continue
            # JSON Schema: booleans are not numbers; 1.0 is an integer (a float is then sent to jsonschema, rarely).
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return False
        return True

    return check


class _Numbers:
    """Notes whether a record's JSON held a non-finite number (bare NaN/Infinity, or 1e999), while parsing it."""

    def __init__(self) -> None:
        self.non_finite = False

    def constant(self, name: str) -> float:
        self.non_finite = True
        return float(name)

    def float(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.non_finite = True
        return value


_PER_THREAD = threading.local()


def _json_reader() -> tuple[_Numbers, json.JSONDecoder]:
    """This thread's JSON decoder and the flags it sets: one decoder, not one per record (json.loads with hooks builds
    a new one each call), made where it is used (a decoder does not pickle into worker processes)."""
    reader = getattr(_PER_THREAD, "reader", None)
    if reader is None:
        numbers = _Numbers()
        reader = _PER_THREAD.reader = (numbers, json.JSONDecoder(parse_constant=numbers.constant, parse_float=numbers.float))
    return reader


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def _has_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _value_problem(f: FieldSpec, value: Any, numbers: _Numbers, escapes: bool) -> tuple[str, str] | None:
    """(counted reason, message) when a value that passed the schema still cannot be stored: an integer outside
    int64 (or a number outside float64), a non-finite number the field does not allow, a lone surrogate."""
    if f.type == "integer" and isinstance(value, int | float) and not INT64[0] <= value <= INT64[1]:
        return "integer out of range", f"{_short(value)} does not fit a 64-bit integer"
    if f.type == "number" and isinstance(value, int) and abs(value) > sys.float_info.max:
        return "number out of range", f"{_short(value)} does not fit a 64-bit float"
    if numbers.non_finite and not f.allow_nan and _non_finite(value):
        return "not a finite number", "NaN or Infinity is not allowed here (set allow_nan: true on the field to keep it)"
    if escapes and _has_surrogate(value):
        return "lone surrogate", "holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
    return None


def make_validate_pass(spec: Spec) -> Pass:
    """Build the pass that turns `_record` JSON text into checked, typed field columns."""
    validator = jsonschema.Draft202012Validator(record_schema(spec))
    quick = quick_check(spec.fields)
    renames = {s.index: dict(s.columns) for s in spec.sources if s.columns}
    defaults = {f.name: f.default for f in spec.fields if f.default is not MISSING}
    fields = spec.fields

    def validate(batch: Batch) -> Batch:
        n = size(batch)
        numbers, decoder = _json_reader()
        out: Batch = {field_column(f.name): [None] * n for f in fields}
        drop: list[str | None] = [None] * n
        error: list[str | None] = [None] * n
        detail: list[str | None] = [None] * n
        for i, raw in enumerate(batch["_record"]):
            try:
                problem = _check_record(raw, i, batch, out, numbers, decoder)
            except RecursionError:
                problem = "nested too deeply", None, "nested too deeply to read"
            if problem is not None:
                reason, name, message = problem
                drop[i], error[i] = f"invalid: {reason}", f"{location(batch, i, name)}: {message}"
                detail[i] = json.dumps({"field": name, "message": message}, ensure_ascii=False)
        out[DROP] = drop
        out[ERROR] = error
        out[DETAIL] = detail
        return out

    def _check_record(raw: bytes, i: int, batch: Batch, out: Batch, numbers: _Numbers,
                      decoder: json.JSONDecoder) -> tuple[str, str | None, str] | None:
        """Parse, check and store one record; (reason, field, message) when it is invalid."""
        unreadable = unreadable_reason(raw)
        if unreadable is not None:
            return unreadable[0], None, unreadable[1]
        numbers.non_finite = False
        try:
            record = decoder.decode(raw.decode("utf-8-sig"))
        except json.JSONDecodeError as exc:
            return "not valid JSON", None, f"not valid JSON: {exc.msg}"
        except UnicodeDecodeError as exc:
            return "not UTF-8", None, f"not UTF-8 text: {exc.reason}"
        except ValueError as exc:  # an integer of more than 4,300 digits
            return "number out of range", None, f"not valid JSON: {exc}"
        if not isinstance(record, dict):
            return "not an object", None, f"a record must be a JSON object, got {type(record).__name__}"
        mapping = renames.get(batch["_source"][i])
        if mapping:
            record = {mapping.get(k, k): v for k, v in record.items()}
        for key, value in defaults.items():
            if record.get(key) is None:
                record[key] = value
        if not (quick is not None and quick(record)) and not validator.is_valid(record):
            err = min(validator.iter_errors(record), key=lambda e: (len(e.absolute_path), str(e.message)))
            return _reason(err)
        escapes = _SURROGATE_ESCAPE.search(raw) is not None
        for f in fields:
            found = _value_problem(f, record.get(f.name), numbers, escapes)
            if found is not None:
                return f"{f.name}: {found[0]}", f.name, found[1]
        for f in fields:
            value = record.get(f.name)
            if f.stored_as_json and value is not None:
                value = json.dumps(value, ensure_ascii=False)
            elif f.type == "integer" and isinstance(value, float):
                value = int(value)
            elif f.type == "number" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # Arrow's float64 takes no Python int outside int64
            out[field_column(f.name)][i] = value
        return None

    return validate
