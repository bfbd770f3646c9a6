"""The validate pass: parse each raw record, rename columns, fill defaults, check it against the fields' JSON Schema.

A record that fails gets `_drop = "invalid: <reason>"` (reasons are counted in the manifest) and a located `_error`.
Valid records come out as typed columns, one per field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pyarrow as pa
from dsc.compiler.batch import DETAIL, DROP, ERROR, Batch, Pass, field_column, location, size
from dsc.compiler.spec import MISSING, FieldSpec, Spec

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


def make_validate_pass(spec: Spec) -> Pass:
    """Build the pass that turns `_record` JSON text into checked, typed field columns."""
    validator = jsonschema.Draft202012Validator(record_schema(spec))
    quick = quick_check(spec.fields)
    renames = {s.index: dict(s.columns) for s in spec.sources if s.columns}
    defaults = {f.name: f.default for f in spec.fields if f.default is not MISSING}
    fields = spec.fields

    def validate(batch: Batch) -> Batch:
        n = size(batch)
        out: Batch = {field_column(f.name): [None] * n for f in fields}
        drop: list[str | None] = [None] * n
        error: list[str | None] = [None] * n
        detail: list[str | None] = [None] * n
        for i, raw in enumerate(batch["_record"]):
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                drop[i], error[i] = "invalid: not valid JSON", f"{location(batch, i)}: not valid JSON: {exc.msg}"
                detail[i] = json.dumps({"message": exc.msg, "column": exc.colno})
                continue
            except UnicodeDecodeError as exc:
                drop[i], error[i] = "invalid: not UTF-8", f"{location(batch, i)}: not UTF-8 text: {exc.reason}"
                detail[i] = json.dumps({"message": exc.reason, "byte": exc.start})
                continue
            if not isinstance(record, dict):
                drop[i] = "invalid: not an object"
                error[i] = f"{location(batch, i)}: a record must be a JSON object, got {type(record).__name__}"
                detail[i] = json.dumps({"message": f"a record must be a JSON object, got {type(record).__name__}"})
                continue
            mapping = renames.get(batch["_source"][i])
            if mapping:
                record = {mapping.get(k, k): v for k, v in record.items()}
            for key, value in defaults.items():
                if record.get(key) is None:
                    record[key] = value
            if not (quick is not None and quick(record)) and not validator.is_valid(record):
                err = min(validator.iter_errors(record), key=lambda e: (len(e.absolute_path), str(e.message)))
                reason, name, message = _reason(err)
                drop[i] = f"invalid: {reason}"
                error[i] = f"{location(batch, i, name)}: {message}"
                detail[i] = json.dumps({"field": name, "message": message}, ensure_ascii=False)
                continue
            for f in fields:
                value = record.get(f.name)
                if f.stored_as_json and value is not None:
                    value = json.dumps(value, ensure_ascii=False)
                elif f.type == "integer" and isinstance(value, float):
                    value = int(value)
                out[field_column(f.name)][i] = value
        out[DROP] = drop
        out[ERROR] = error
        out[DETAIL] = detail
        return out

    return validate
