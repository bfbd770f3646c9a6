"""Spec loading: YAML (with lines) -> JSON Schema check -> resolved, frozen `Spec`.

Every problem found here is a `SpecError` naming the file, the line and the key path.
"""

from __future__ import annotations

import difflib
import glob
import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from dsc.compiler import resources
from dsc.compiler.chat.chat_spec import ChatSpec, parse_chat
from dsc.compiler.dedup_spec import DedupSpec, parse_dedup
from dsc.compiler.errors import Location, Problem, SpecError
from dsc.compiler.sandbox import environment
from dsc.compiler.training import TrainingSpec, parse_training
from dsc.compiler.yaml_lines import KeyPath, line_of, load_yaml_with_lines
from jinja2 import TemplateSyntaxError, meta

MISSING: Any = object()
"""Marks a field without a default (None is a valid default)."""

HISTORY_VARIABLES = ("query", "answer", "round")
"""Names a history template sees besides the record's fields: the turn's text and its 0-based index."""

FILE_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = "string"
    required: bool = False
    default: Any = MISSING
    items: FieldSpec | None = None
    enum: tuple[Any, ...] | None = None
    min_length: int | None = None

    @property
    def stored_as_json(self) -> bool:
        """Arrays, objects and `any` travel through Arrow as JSON text: their shape may vary by record."""
        return self.type in ("array", "object", "any")


@dataclass(frozen=True)
class SourceSpec:
    index: int
    label: str
    kind: str  # "file" or "hub"
    files: tuple[Path, ...] = ()
    format: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class DerivedSpec:
    name: str
    source: str | None = None
    regex: str | None = None
    group: int | str = 1
    expression: str | None = None
    default: str | None = None


@dataclass(frozen=True)
class Template:
    key: str  # e.g. "templates.prompt"
    text: str
    file: Path | None
    line: int | None


@dataclass(frozen=True)
class History:
    field: str
    prompt: Template
    response: Template


@dataclass(frozen=True)
class TokenizerSpec:
    name: str = "qwen3"
    revision: str | None = None
    trust_remote_code: bool = False
    eos_token: str | None = None


@dataclass(frozen=True)
class Lengths:
    max_length: int | None = None
    max_source_length: int | None = None
    max_target_length: int | None = None
    source_overflow: str = "truncate"
    target_overflow: str = "truncate"
    prompt_truncation: str = "right"


@dataclass(frozen=True)
class Labels:
    train_on_prompt: bool = False
    turns: str = "last"


@dataclass(frozen=True)
class Split:
    validation: float | int = 0
    seed: int = 42


@dataclass(frozen=True)
class Spec:
    """A resolved format spec: paths absolute, templates loaded, defaults filled in."""

    path: Path
    name: str
    description: str
    license: str
    language: tuple[str, ...]
    pretty_name: str
    task_categories: tuple[str, ...]
    sources: tuple[SourceSpec, ...]
    fields: tuple[FieldSpec, ...]
    on_invalid: str
    derived: tuple[DerivedSpec, ...]
    system: Template | None
    prompt: Template | None  # None for conversations (`chat`)
    response: Template | None
    history: History | None
    tokenizer: TokenizerSpec
    lengths: Lengths
    labels: Labels
    split: Split
    output: Path
    dedup: DedupSpec | None = None
    resolved: dict[str, Any] = field(default_factory=dict)
    lines: dict[KeyPath, int] = field(default_factory=dict)
    training: TrainingSpec | None = None
    chat: ChatSpec | None = None

    def where(self, *path: str | int) -> Location:
        """The spec file and line of a key path, for problems found after loading (tokenizer, sources)."""
        return Location(str(self.path), line_of(self.lines, path))

    @property
    def templates(self) -> tuple[Template, ...]:
        """Every template, in rendering order."""
        out = [t for t in (self.system,) if t is not None]
        if self.history is not None:
            out += [self.history.prompt, self.history.response]
        chat = self.chat.template if self.chat is not None else None
        return tuple(t for t in (*out, self.prompt, self.response, chat) if t is not None)

    @property
    def variables(self) -> tuple[str, ...]:
        """Names a record offers its templates: fields, then derived fields."""
        return tuple(f.name for f in self.fields) + tuple(d.name for d in self.derived)


@lru_cache(maxsize=1)
def spec_schema() -> dict[str, Any]:
    """The JSON Schema every format spec is checked against first."""
    return json.loads((Path(__file__).with_name("spec_schema.json")).read_text(encoding="utf-8"))


class SpecContext:
    """What a resolver needs to report a problem at the right line."""

    def __init__(self, file: Path, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines

    def problem(self, path: KeyPath, message: str) -> Problem:
        key = ".".join(str(p) for p in path)
        return Problem(f"{key}: {message}" if key else message, Location(str(self.file), line_of(self.lines, path)))

    def fail(self, path: KeyPath, message: str) -> SpecError:
        return SpecError(self.problem(path, message))


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        hints = []
        for key in extra:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hints.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return "; ".join(hints) + f"; allowed keys are {', '.join(allowed)}"
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return best.message
    return error.message


def check_schema(data: Any, ctx: SpecContext, schema: dict[str, Any] | None = None) -> None:
    """Check `data` against a JSON Schema (the format spec's unless given); every error is located."""
    validator = jsonschema.Draft202012Validator(schema or spec_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (line_of(ctx.lines, tuple(e.absolute_path)) or 0))
    if errors:
        problems = []
        for error in errors[:20]:
            path = tuple(error.absolute_path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = set(error.schema.get("properties", {}))
                extra = [k for k in error.instance if k not in allowed]
                if extra:
                    path = (*path, extra[0])
            problems.append(ctx.problem(path, _schema_message(error)))
        raise SpecError(problems, total=len(errors))


def _field(name: str, raw: dict[str, Any]) -> FieldSpec:
    items = _field(f"{name}[]", raw["items"]) if "items" in raw else None
    enum = tuple(raw["enum"]) if "enum" in raw else None
    return FieldSpec(
        name=name,
        type=raw.get("type", "string"),
        required=bool(raw.get("required", False)),
        default=raw.get("default", MISSING),
        items=items,
        enum=enum,
        min_length=raw.get("min_length"),
    )


def _sources(raw: list[dict[str, Any]], base: Path, ctx: SpecContext) -> tuple[SourceSpec, ...]:
    out = []
    for i, src in enumerate(raw):
        columns = tuple((str(k), str(v)) for k, v in (src.get("columns") or {}).items())
        line = line_of(ctx.lines, ("sources", i))
        if "hub" in src:
            out.append(
                SourceSpec(
                    index=i,
                    label=src["hub"],
                    kind="hub",
                    hub=src["hub"],
                    config=src.get("config"),
                    split=src.get("split", "train"),
                    revision=src.get("revision"),
                    columns=columns,
                    line=line,
                )
            )
            continue
        pattern = src["path"]
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        files = tuple(Path(p) for p in sorted(glob.glob(full, recursive=True)) if Path(p).is_file())
        if not files:
            raise ctx.fail(("sources", i, "path"), f"no file matches '{pattern}' (looked in {base})")
        fmt = src.get("format")
        for f in files:
            guessed = FILE_FORMATS.get(f.suffix.lower())
            if fmt is None and guessed is None:
                raise ctx.fail(
                    ("sources", i, "path"),
                    f"cannot tell the format of '{f.name}'; add format: json|jsonl|csv|parquet",
                )
        out.append(
            SourceSpec(
                index=i,
                label=pattern,
                kind="file",
                files=files,
                format=fmt,
                columns=columns,
                line=line,
            )
        )
    return tuple(out)


def _template_file(name: str, base: Path) -> Path | None:
    for folder in (base, base.parent / "templates", resources.templates_dir()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def load_template(raw: Any, path: KeyPath, base: Path, ctx: SpecContext) -> Template:
    """An inline template, or a `{file: ...}` one found beside the spec, in templates/, or in dsc's templates."""
    key = ".".join(str(p) for p in path)
    line = line_of(ctx.lines, path)
    if isinstance(raw, dict):
        found = _template_file(raw["file"], base)
        if found is None:
            raise ctx.fail(
                (*path, "file"),
                f"template file '{raw['file']}' not found (looked beside the spec, in templates/, and in dsc's templates)",
            )
        return Template(key=key, text=found.read_text(encoding="utf-8"), file=found, line=1)
    return Template(key=key, text=raw, file=None, line=line)


def undeclared_names(source: str, template: Template | None, ctx: SpecContext, path: KeyPath) -> set[str]:
    """The names a template reads that it does not define itself (syntax errors are located spec errors)."""
    env = environment()
    try:
        parsed = env.parse(source)
    except TemplateSyntaxError as exc:
        if template is not None and template.file is not None:
            raise SpecError(
                Problem(f"{template.key}: template syntax error: {exc.message}", Location(str(template.file), exc.lineno))
            ) from None
        raise ctx.fail(path, f"template syntax error (template line {exc.lineno}): {exc.message}") from None
    return set(meta.find_undeclared_variables(parsed)) - set(env.globals)


def check_names(names: set[str], allowed: list[str], what: str, path: KeyPath, ctx: SpecContext, t: Template | None) -> None:
    """Fail on the first name not in `allowed`, suggesting the closest one."""
    for name in sorted(names - set(allowed)):
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        message = f"undefined variable '{name}'{hint}; {what} are {', '.join(allowed)}"
        if t is not None and t.file is not None:
            raise SpecError(Problem(f"{t.key}: {message}", Location(str(t.file))))
        raise ctx.fail(path, message)


def _derived(raw: dict[str, Any], fields: tuple[FieldSpec, ...], ctx: SpecContext) -> tuple[DerivedSpec, ...]:
    known = [f.name for f in fields]
    out = []
    for name, d in raw.items():
        path = ("derived", name)
        if name in known:
            raise ctx.fail(path, f"'{name}' is already a field")
        if "regex" in d:
            if d["from"] not in known:
                raise ctx.fail((*path, "from"), f"unknown field '{d['from']}'; known are {', '.join(known)}")
            try:
                compiled = re.compile(d["regex"], re.DOTALL)
            except re.error as exc:
                raise ctx.fail((*path, "regex"), f"invalid regular expression: {exc}") from None
            group = d.get("group", 1 if compiled.groups else 0)
            if isinstance(group, int) and group > compiled.groups:
                raise ctx.fail((*path, "regex"), f"has {compiled.groups} group(s); group {group} asked for")
            if isinstance(group, str) and group not in compiled.groupindex:
                raise ctx.fail((*path, "group"), f"no group named '{group}' in the regex")
            out.append(DerivedSpec(name=name, source=d["from"], regex=d["regex"], group=group, default=d.get("default")))
        else:
            names = undeclared_names("{{ " + d["expression"] + " }}", None, ctx, (*path, "expression"))
            check_names(names, known, "fields", (*path, "expression"), ctx, None)
            out.append(DerivedSpec(name=name, expression=d["expression"], default=d.get("default")))
        known.append(name)
    return tuple(out)


def _policies(raw: Any) -> tuple[str, str]:
    if raw is None:
        return "truncate", "truncate"
    if isinstance(raw, str):
        return raw, raw
    return raw.get("source", "truncate"), raw.get("target", "truncate")


def merge_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys of `overrides` replace the spec's (mappings are merged one level deep; None is ignored)."""
    merged = dict(data)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def read_spec_file(found: Path | None, given: str | Path, kind: str, keys: str) -> tuple[dict[str, Any], SpecContext]:
    """A spec file's YAML mapping and the context that locates its keys; `found` is None when nothing matched `given`."""
    if found is None:
        raise SpecError(Problem(f"no such spec file (and no built-in {kind} named '{Path(given).stem}')", Location(str(given))))
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Problem(f"cannot read spec: {exc}", Location(str(found)))) from None
    data, lines = load_yaml_with_lines(text, str(found))
    ctx = SpecContext(found, lines)
    if not isinstance(data, dict):
        raise ctx.fail((), f"a {kind} spec is a YAML mapping ({keys})")
    return data, ctx


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, check and resolve a format spec; `overrides` replace top-level keys (the CLI's --output, --tokenizer)."""
    data, ctx = read_spec_file(resources.find_spec_file(str(path)), path, "format", "name:, sources:, fields:, templates:, ...")
    file = ctx.file
    data = merge_overrides(data, overrides or {})
    check_schema(data, ctx)
    base = file.resolve().parent

    fields = tuple(_field(name, raw) for name, raw in data["fields"].items())
    for f in fields:
        if f.required and f.default is not MISSING:
            raise ctx.fail(("fields", f.name, "default"), "a required field cannot have a default")
    derived = _derived(data.get("derived") or {}, fields, ctx)
    variables = [f.name for f in fields] + [d.name for d in derived]

    tdata = data["templates"]
    chat = None
    if "chat" in tdata:
        types = {f.name: f.type for f in fields}
        chat = parse_chat(data, types, lambda raw, path: load_template(raw, path, base, ctx), ctx.fail)
    elif "conversation" in data:
        raise ctx.fail(("conversation",), "conversations render with a chat template: add templates: {chat: tokenizer}")
    elif not {"prompt", "response"} <= set(tdata):
        raise ctx.fail(("templates",), "needs prompt and response (or chat: for conversations)")
    system = load_template(tdata["system"], ("templates", "system"), base, ctx) if "system" in tdata else None
    prompt = load_template(tdata["prompt"], ("templates", "prompt"), base, ctx) if chat is None else None
    response = load_template(tdata["response"], ("templates", "response"), base, ctx) if chat is None else None
    history = None
    if "history" in tdata:
        h = tdata["history"]
        hist_field = next((f for f in fields if f.name == h["field"]), None)
        if hist_field is None or hist_field.type not in ("array", "any"):
            raise ctx.fail(("templates", "history", "field"), f"'{h['field']}' must be a field of type array")
        history = History(
            field=h["field"],
            prompt=load_template(h["prompt"], ("templates", "history", "prompt"), base, ctx),
            response=load_template(h["response"], ("templates", "history", "response"), base, ctx),
        )
    used: dict[str, set[str]] = {"templates.history": {history.field} if history else set()}
    for t in (system, prompt, response) + ((history.prompt, history.response) if history else ()):
        if t is None:
            continue
        path = tuple(t.key.split("."))
        names = used[t.key] = undeclared_names(t.text, t, ctx, path)
        allowed = variables + (list(HISTORY_VARIABLES) if history and path[1] == "history" else [])
        if history and path[1] != "history":
            allowed = allowed + ["round"]
        check_names(names, allowed, "fields", path, ctx, t)
    if chat is not None:  # dedup compares what the conversation reads; the response side is the conversation itself
        used = {"templates.chat": {n for n in (chat.messages, chat.tools, chat.system) if n}, "templates.response": {chat.messages}}

    tok = data.get("tokenizer", "qwen3")
    tokenizer = TokenizerSpec(name=tok) if isinstance(tok, str) else TokenizerSpec(**tok)

    lraw = data.get("lengths") or {}
    source_policy, target_policy = _policies(lraw.get("overflow"))
    lengths = Lengths(
        max_length=lraw.get("max_length"),
        max_source_length=lraw.get("max_source_length"),
        max_target_length=lraw.get("max_target_length"),
        source_overflow=source_policy,
        target_overflow=target_policy,
        prompt_truncation=lraw.get("prompt_truncation", "right"),
    )
    if lengths.max_target_length is not None and lengths.max_target_length < 2:
        raise ctx.fail(("lengths", "max_target_length"), "must leave room for one response token and the EOS (>= 2)")

    label_raw = data.get("labels") or {}
    labels = Labels(train_on_prompt=label_raw.get("train_on_prompt", False), turns=label_raw.get("turns", "last"))
    if labels.turns == "all" and history is None:
        raise ctx.fail(("labels", "turns"), "'all' needs templates.history (there is only one turn otherwise)")

    split_raw = data.get("split") or {}
    split = Split(validation=split_raw.get("validation", 0), seed=split_raw.get("seed", 42))

    dedup = None
    if data.get("dedup", False) is not False:
        prompt_side = set().union(*(names for key, names in used.items() if key != "templates.response"))
        numeric = [f.name for f in fields if f.type in ("integer", "number")]
        dedup = parse_dedup(data["dedup"], variables, numeric, prompt_side, used["templates.response"], ctx.fail)

    name = data["name"]
    language = data.get("language", [])
    # What the build ran with: the spec as written plus every default filled in (the manifest records this).
    resolved = {
        **data,
        "on_invalid": data.get("on_invalid", "error"),
        "tokenizer": asdict(tokenizer),
        "lengths": asdict(lengths),
        "labels": asdict(labels),
        "split": asdict(split),
        "output": data.get("output", f"build/{name}"),
    }
    return Spec(
        path=file.resolve(),
        name=name,
        description=data.get("description", ""),
        license=data.get("license", "other"),
        language=tuple([language] if isinstance(language, str) else language),
        pretty_name=data.get("pretty_name", name),
        task_categories=tuple(data.get("task_categories", ["text-generation"])),
        sources=_sources(data["sources"], base, ctx),
        fields=fields,
        on_invalid=data.get("on_invalid", "error"),
        derived=derived,
        system=system,
        prompt=prompt,
        response=response,
        history=history,
        tokenizer=tokenizer,
        lengths=lengths,
        labels=labels,
        split=split,
        output=Path(resolved["output"]),
        dedup=dedup,
        resolved=resolved,
        lines=ctx.lines,
        training=parse_training(data.get("training"), ctx.fail),
        chat=chat,
    )
