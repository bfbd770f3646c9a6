"""Spec loading: YAML (with lines) -> JSON Schema check -> resolved, frozen `Spec`.

Every problem found here is a `SpecError` naming the file, the line and the key path.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import regex
from dsc.compiler import resources
from dsc.compiler.chat.chat_spec import ChatSpec, parse_chat
from dsc.compiler.dedup.settings import DedupSpec, parse_dedup
from dsc.compiler.errors import Location, Problem, SpecError
from dsc.compiler.limits import TEMPLATE_PATH_ENV
from dsc.compiler.sandbox import environment
from dsc.compiler.sandbox import template as compiled
from dsc.compiler.training import TrainingSpec, parse_training
from dsc.compiler.yaml_lines import KeyPath, line_of, load_yaml_with_lines
from jinja2 import TemplateSyntaxError, meta, nodes

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
    allow_nan: bool = False

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


MIN_TARGET_TOKENS = 16
"""The default floor on a cut response: fewer kept tokens mostly teach the model to stop right after an answer's
opening words (see README, Tokenization and labels)."""


@dataclass(frozen=True)
class Lengths:
    max_length: int | None = None
    max_source_length: int | None = None
    max_target_length: int | None = None
    source_overflow: str = "truncate"
    target_overflow: str = "truncate"
    prompt_truncation: str = "right"
    min_target_tokens: int = MIN_TARGET_TOKENS


@dataclass(frozen=True)
class Labels:
    train_on_prompt: bool = False
    turns: str = "last"


@dataclass(frozen=True)
class Split:
    validation: float | int = 0
    seed: int = 42


@dataclass(frozen=True)
class CardInfo:
    """What the dataset card says about where the data comes from and its terms, beyond the licence id."""

    license_name: str | None = None
    license_link: str | None = None
    source_datasets: tuple[str, ...] = ()
    homepage: str | None = None
    citation: str | None = None


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
    overridden: dict[str, str] = field(default_factory=dict)
    card: CardInfo = CardInfo()
    chat: ChatSpec | None = None

    def where(self, *path: str | int) -> Location:
        """The spec file and line of a key path, for problems found after loading (tokenizer, sources); for a top-level
        key an override replaced, the override's origin instead (`--tokenizer`), since the spec's line is not the culprit."""
        if path and path[0] in self.overridden:
            return Location(field=self.overridden[str(path[0])])
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

    def __init__(self, file: Path, lines: dict[KeyPath, int], origins: dict[str, str] | None = None) -> None:
        self.file = file
        self.lines = lines
        self.origins = origins or {}
        """Top-level keys given from outside the file (`--tokenizer`, a `dsc.build` keyword) and what gave them."""

    def problem(self, path: KeyPath, message: str) -> Problem:
        key = ".".join(str(p) for p in path)
        text = f"{key}: {message}" if key else message
        if path and path[0] in self.origins:  # the spec file's line is not the culprit: name what gave the key
            return Problem(text, Location(str(self.file), field=self.origins[str(path[0])]))
        return Problem(text, Location(str(self.file), line_of(self.lines, path)))

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
        allow_nan=bool(raw.get("allow_nan", False)),
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


def template_folders(base: Path) -> list[Path]:
    """The folders `{file: ...}` templates may come from: beside the spec, the project's templates/ (the spec
    folder's parent's), dsc's own, and any trusted folders listed in DSC_TEMPLATE_PATH."""
    extra = [Path(p) for p in os.environ.get(TEMPLATE_PATH_ENV, "").split(os.pathsep) if p]
    return [base, base.parent / "templates", resources.templates_dir(), *extra]


def _template_file(name: str, base: Path, ctx: SpecContext, path: KeyPath) -> Path | None:
    """The first file of that name in the template folders; one whose real path (`..`, an absolute path, a symlink)
    leaves every template folder is refused: a shared spec must not pull /etc/passwd into every row."""
    folders = template_folders(base)
    roots = [f.resolve() for f in folders]
    for folder in folders:
        candidate = folder / name
        if candidate.is_file():
            real = candidate.resolve()
            if not any(real.is_relative_to(root) for root in roots):
                raise ctx.fail(
                    path,
                    f"template file '{name}' is {real}, outside the folders templates may come from (beside the spec, "
                    f"templates/, dsc's templates); add a trusted folder to {TEMPLATE_PATH_ENV} to allow it",
                )
            return candidate
    return None


def load_template(raw: Any, path: KeyPath, base: Path, ctx: SpecContext) -> Template:
    """An inline template, or a `{file: ...}` one found beside the spec, in templates/, or in dsc's templates."""
    key = ".".join(str(p) for p in path)
    line = line_of(ctx.lines, path)
    if isinstance(raw, dict):
        found = _template_file(raw["file"], base, ctx, (*path, "file"))
        if found is None:
            raise ctx.fail(
                (*path, "file"),
                f"template file '{raw['file']}' not found (looked beside the spec, in templates/, and in dsc's templates)",
            )
        try:
            text = found.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ctx.fail((*path, "file"), f"cannot read template file '{raw['file']}': {exc}") from None
        return Template(key=key, text=text, file=found, line=1)
    return Template(key=key, text=raw, file=None, line=line)


def undeclared_names(source: str, template: Template | None, ctx: SpecContext, path: KeyPath) -> set[str]:
    """The names a template reads that it does not define itself (syntax errors are located spec errors)."""
    env = environment()
    try:
        parsed = env.parse(source)
        compiled(source)  # compile errors (an unknown filter) are spec errors, not one error per record
    except TemplateSyntaxError as exc:
        if template is not None and template.file is not None:
            raise SpecError(
                Problem(f"{template.key}: template syntax error: {exc.message}", Location(str(template.file), exc.lineno))
            ) from None
        raise ctx.fail(path, f"template syntax error (template line {exc.lineno}): {exc.message}") from None
    reading = next(parsed.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)), None)
    if reading is not None:
        message = "templates cannot read other files ({% include %}, {% import %}, {% extends %}); put the text in the template"
        if template is not None and template.file is not None:
            raise SpecError(Problem(f"{template.key}: {message}", Location(str(template.file), reading.lineno)))
        raise ctx.fail(path, f"{message} (template line {reading.lineno})")
    return set(meta.find_undeclared_variables(parsed)) - set(env.globals)


def _name_line(text: str, name: str) -> int | None:
    """The template line where `name` is first read."""
    for node in environment().parse(text).find_all(nodes.Name):
        if node.name == name and node.ctx == "load":
            return node.lineno
    return None


def check_names(names: set[str], allowed: list[str], what: str, path: KeyPath, ctx: SpecContext, t: Template | None) -> None:
    """Fail on the first name not in `allowed`, suggesting the closest one."""
    for name in sorted(names - set(allowed)):
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        message = f"undefined variable '{name}'{hint}; {what} are {', '.join(allowed)}"
        if t is not None and t.file is not None:
            raise SpecError(Problem(f"{t.key}: {message}", Location(str(t.file), _name_line(t.text, name))))
        raise ctx.fail(path, message)


@lru_cache(maxsize=64)
def compile_regex(pattern: str) -> regex.Pattern[str]:
    """A derived field's regex, on the `regex` engine (searches run with a timeout; Python's `re` has none)."""
    return regex.compile(pattern, regex.DOTALL)


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
                compiled = compile_regex(d["regex"])
            except regex.error as exc:
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


def check_lengths(lengths: Lengths, ctx: SpecContext) -> None:
    """Lengths that contradict each other are spec errors, not a silent cut of every record."""
    total, source, target = lengths.max_length, lengths.max_source_length, lengths.max_target_length
    if target is not None and target < 2:
        raise ctx.fail(("lengths", "max_target_length"), "must leave room for one response token and the EOS (>= 2)")
    if total is None:
        return
    for key, side in (("max_target_length", target), ("max_source_length", source)):
        if side is not None and side >= total:
            raise ctx.fail(("lengths", key), f"{side} is not below max_length ({total}): nothing would be left for the other side")
    if source is not None and target is not None and source + target > total:
        raise ctx.fail(
            ("lengths", "max_length"),
            f"{total} is less than max_source_length + max_target_length ({source} + {target} = {source + target}): "
            "raise max_length or lower the sides",
        )


def parse_split(raw: dict[str, Any], ctx: SpecContext) -> Split:
    """`split.validation`: a fraction written with a point (0 < f < 1) or a count (an integer >= 0)."""
    value = raw.get("validation", 0)
    path = ("split", "validation")
    if value < 0:
        raise ctx.fail(path, f"{value} is negative: give a fraction between 0 and 1 (0.05) or a count of records (500)")
    if isinstance(value, float) and value >= 1:
        raise ctx.fail(path, f"{value} would leave no training data: a fraction must be below 1 (write a count as an integer: 500)")
    return Split(validation=value, seed=raw.get("seed", 42))


def _policies(raw: Any) -> tuple[str, str]:
    if raw is None:
        return "truncate", "truncate"
    if isinstance(raw, str):
        return raw, raw
    return raw.get("source", "truncate"), raw.get("target", "truncate")


def _min_target_tokens(lraw: dict[str, Any], ctx: SpecContext) -> int:
    """The floor on a cut response, at most what `max_target_length` leaves beside the EOS (the default shrinks to
    fit; a floor written in the spec that cannot fit is an error)."""
    cap = lraw["max_target_length"] - 1 if lraw.get("max_target_length") else None
    if "min_target_tokens" not in lraw:
        return MIN_TARGET_TOKENS if cap is None else min(MIN_TARGET_TOKENS, cap)
    floor = lraw["min_target_tokens"]
    if cap is not None and floor > cap:
        raise ctx.fail(("lengths", "min_target_tokens"), f"{floor} exceeds what max_target_length leaves beside the EOS ({cap})")
    return floor


def _card_info(data: dict[str, Any], ctx: SpecContext) -> CardInfo:
    """The card's provenance keys; `license: other` must say which licence and where it is (the Hub asks for both)."""
    if data.get("license") == "other":
        missing = [key for key in ("license_name", "license_link") if key not in data]
        if missing:
            raise ctx.fail(("license",), f"'other' needs {' and '.join(missing)} (a short id and a link to the terms)")
    elif "license_name" in data or "license_link" in data:
        key = "license_name" if "license_name" in data else "license_link"
        raise ctx.fail((key,), "only for license: other (a licence the Hub knows by id needs no name or link)")
    return CardInfo(
        license_name=data.get("license_name"),
        license_link=data.get("license_link"),
        source_datasets=tuple(data.get("source_datasets", ())),
        homepage=data.get("homepage"),
        citation=data.get("citation"),
    )


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


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None, origins: dict[str, str] | None = None) -> Spec:
    """Read, check and resolve a format spec; `overrides` replace top-level keys (the CLI's --output, --tokenizer), and
    `origins` name where each came from (`{"tokenizer": "--tokenizer"}`) for problems found later (Spec.where)."""
    data, ctx = read_spec_file(resources.find_spec_file(str(path)), path, "format", "name:, sources:, fields:, templates:, ...")
    file = ctx.file
    data = merge_overrides(data, overrides or {})
    ctx.origins = {k: (origins or {}).get(k, f"the {k} override") for k, v in (overrides or {}).items() if v is not None}
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
        min_target_tokens=_min_target_tokens(lraw, ctx),
    )
    check_lengths(lengths, ctx)

    label_raw = data.get("labels") or {}
    labels = Labels(train_on_prompt=label_raw.get("train_on_prompt", False), turns=label_raw.get("turns", "last"))
    if labels.turns == "all" and history is None:
        raise ctx.fail(("labels", "turns"), "'all' needs templates.history (there is only one turn otherwise)")

    split = parse_split(data.get("split") or {}, ctx)

    dedup = None
    if data.get("dedup", False) is not False:
        prompt_side = set().union(*(names for key, names in used.items() if key != "templates.response"))
        numeric = [f.name for f in fields if f.type in ("integer", "number")]
        dedup = parse_dedup(data["dedup"], variables, numeric, prompt_side, used["templates.response"], ctx.fail)

    name = data["name"]
    language = data.get("language", [])
    card = _card_info(data, ctx)
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
        license=data.get("license", "unknown"),
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
        card=card,
        training=parse_training(data.get("training"), ctx.fail),
        overridden=ctx.origins,
        chat=chat,
    )
