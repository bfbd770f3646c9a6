"""Generate specs: YAML (with lines) -> JSON Schema check -> resolved, frozen `GenerateSpec`; and the seed tasks.

Checked like format specs (same loader, same located errors): a problem names the file, the line and the key path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dsc.compiler import resources
from dsc.compiler.dedup.settings import Near
from dsc.compiler.errors import Location, Problem, RecordError
from dsc.compiler.generate.encoding import Task
from dsc.compiler.generate.filters import ALPACA_BLACKLIST, ALPACA_PREFIXES, Filters
from dsc.compiler.generate.novelty import MINHASH, ROUGE_L
from dsc.compiler.spec import (
    SpecContext,
    Template,
    check_names,
    check_schema,
    load_template,
    merge_overrides,
    read_spec_file,
    undeclared_names,
)

DEFAULT_PROMPT = "alpaca_self_instruct_prompt.txt"
"""Stanford Alpaca's prompt.txt, byte for byte, in templates/."""
DEFAULT_STOP = ("\n20", "20.")
"""Alpaca's stop sequences (it lists "20." twice): the prompt asks for a list of 20."""
DEFAULT_MINHASH_THRESHOLD = 0.6
DEFAULT_MINHASH_NGRAM = 1
"""Jaccard of word sets at which a candidate counts as a copy: of the settings bench/novelty_bench.py tries, the one
whose decisions agree most with Alpaca's ROUGE-L > 0.7 on the same candidates (instructions are short, so one new
word breaks two bigrams and bigram Jaccard lets close rewordings through)."""
DEFAULT_TIMEOUT = 75.0
"""Seconds to wait for an answer once connected (a model writes all of it before the first byte comes back)."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_STALL_REQUESTS = 25
"""Requests in a row that keep no new record (five of Alpaca's batches, ~375 candidates) before the run stops."""
DEFAULT_STALL_SECONDS = 90.0
"""Seconds without a new record before the run stops: above `timeout`, so one hung request is timed out first, and well
under two minutes, so an endpoint that never answers is reported while someone is still watching."""
TEMPLATE_VARIABLES = ("examples", "num_examples")
"""What the prompt template sees: the sampled seed tasks (instruction, input, output) and how many there are."""


@dataclass(frozen=True)
class NoveltySpec:
    similarity: str = MINHASH
    threshold: float = DEFAULT_MINHASH_THRESHOLD
    top: int = 10
    near: Near = Near(threshold=DEFAULT_MINHASH_THRESHOLD, ngram=DEFAULT_MINHASH_NGRAM)


@dataclass(frozen=True)
class Stall:
    """When a run that keeps nothing new stops (None: never on that count)."""

    requests: int | None = DEFAULT_STALL_REQUESTS
    seconds: float | None = DEFAULT_STALL_SECONDS


@dataclass(frozen=True)
class GenerateSpec:
    """A resolved generate spec: paths absolute (the output relative to the working directory), defaults filled in."""

    path: Path
    name: str
    seeds: Path
    seed_tasks: tuple[Task, ...]
    seeds_sha256: str
    prompt: Template
    examples_per_request: int
    requests_per_batch: int
    num_instructions: int
    output: Path
    seed: int
    model: str
    base_url: str
    api: str
    api_key_env: str
    api_key_required: bool
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    extra_body: dict[str, Any]
    concurrency: int
    timeout: float
    connect_timeout: float
    stall: Stall
    retries: int
    backoff: float
    filters: Filters
    novelty: NoveltySpec

    def settings(self) -> dict[str, Any]:
        """What decides the prompts and what is kept: a run resumes only under the same settings."""
        return {
            "seeds_sha256": self.seeds_sha256,
            "prompt": self.prompt.text,
            "examples_per_request": self.examples_per_request,
            "seed": self.seed,
            "model": self.model,
            "api": self.api,
            "sampling": {"temperature": self.temperature, "top_p": self.top_p, "stop": list(self.stop), "extra_body": self.extra_body},
            "filters": {
                "words": [self.filters.min_words, self.filters.max_words],
                "blacklist": list(self.filters.blacklist),
                "prefixes": list(self.filters.prefixes),
                "leading_punctuation": self.filters.leading_punctuation,
                "ascii_start": self.filters.ascii_start,
            },
            "novelty": {"similarity": self.novelty.similarity, "threshold": self.novelty.threshold, "near": vars(self.novelty.near)},
        }


@lru_cache(maxsize=1)
def generate_schema() -> dict[str, Any]:
    """The JSON Schema every generate spec is checked against first."""
    return json.loads(Path(__file__).with_name("schema.json").read_text(encoding="utf-8"))


def builtin_specs() -> list[Path]:
    """The built-in generate specs (formats/generate/), apart from the format specs so `dsc formats` lists only those."""
    return sorted((resources.formats_dir() / "generate").glob("*.yaml"))


def find_generate_spec(name_or_path: str) -> Path | None:
    """A spec path as given, else a built-in generate spec by name (`alpaca`)."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    stem = given.name.removesuffix(".yaml")
    return next((p for p in builtin_specs() if p.stem == stem), None)


def _filters(raw: dict[str, Any]) -> Filters:
    words = raw.get("words", {})
    words = {"min": None, "max": None} if words is False else {"min": 4, "max": 150, **words}
    blacklist = raw.get("blacklist", list(ALPACA_BLACKLIST))
    prefixes = raw.get("prefixes", list(ALPACA_PREFIXES))
    return Filters(
        min_words=words["min"],
        max_words=words["max"],
        blacklist=tuple(blacklist or ()),
        prefixes=tuple(prefixes or ()),
        leading_punctuation=raw.get("leading_punctuation", True),
        ascii_start=raw.get("ascii_start", True),
    )


def _stall(raw: dict[str, Any] | bool) -> Stall:
    if raw is False:
        return Stall(requests=None, seconds=None)
    assert isinstance(raw, dict)  # the schema allows an object or false
    given = {k: None if v is False else v for k, v in raw.items()}
    return Stall(**given)


def _novelty(raw: dict[str, Any], ctx: SpecContext) -> NoveltySpec:
    similarity = raw.get("similarity", MINHASH)
    threshold = raw.get("threshold", 0.7 if similarity == ROUGE_L else DEFAULT_MINHASH_THRESHOLD)
    minhash_keys = [k for k in ("shingles", "ngram", "num_perm", "bands", "rows", "seed") if k in raw]
    if similarity == ROUGE_L and minhash_keys:
        raise ctx.fail(("generate", "novelty", minhash_keys[0]), "is a MinHash setting; similarity is rouge-l")
    near = Near(**{"threshold": threshold, "ngram": DEFAULT_MINHASH_NGRAM, **{k: raw[k] for k in minhash_keys}})
    if (near.bands is None) != (near.rows is None):
        raise ctx.fail(("generate", "novelty"), "give both bands and rows, or neither (then the threshold picks them)")
    if near.bands is not None and near.rows is not None and near.bands * near.rows > near.num_perm:
        raise ctx.fail(("generate", "novelty", "bands"), f"bands x rows = {near.bands * near.rows} exceeds num_perm {near.num_perm}")
    return NoveltySpec(similarity=similarity, threshold=threshold, top=raw.get("top", 10), near=near)


def load_generate_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> GenerateSpec:
    """Read, check and resolve a generate spec; `overrides` replace keys of `generate:` (the CLI's --num, --output...)."""
    data, ctx = read_spec_file(find_generate_spec(str(path)), path, "generate", "name:, generate:")
    found = ctx.file
    if isinstance(data.get("generate"), dict):
        data = {**data, "generate": merge_overrides(data["generate"], overrides or {})}
    check_schema(data, ctx, generate_schema())
    g = data["generate"]
    base = found.resolve().parent

    seeds = Path(g["seeds"]) if Path(g["seeds"]).is_absolute() else base / g["seeds"]
    if not seeds.is_file():
        raise ctx.fail(("generate", "seeds"), f"no seed file '{g['seeds']}' (looked in {base})")
    prompt = load_template(g.get("prompt", {"file": DEFAULT_PROMPT}), ("generate", "prompt"), base, ctx)
    names = undeclared_names(prompt.text, prompt, ctx, ("generate", "prompt"))
    check_names(names, list(TEMPLATE_VARIABLES), "template variables", ("generate", "prompt"), ctx, prompt)

    tasks = read_seeds(seeds)
    per_request = g.get("examples_per_request", 3)
    if per_request > len(tasks):
        message = f"{per_request} examples per request, but {seeds.name} has {len(tasks)} seed tasks"
        raise ctx.fail(("generate", "examples_per_request"), message)
    batch = g.get("requests_per_batch", 5)
    stop = g.get("stop", list(DEFAULT_STOP))
    return GenerateSpec(
        path=found.resolve(),
        name=data["name"],
        seeds=seeds.resolve(),
        seed_tasks=tuple(tasks),
        seeds_sha256=hashlib.sha256(seeds.read_bytes()).hexdigest(),
        prompt=prompt,
        examples_per_request=per_request,
        requests_per_batch=batch,
        num_instructions=g.get("num_instructions", 100),
        output=Path(g.get("output", f"build/generated/{data['name']}.jsonl")),
        seed=g.get("seed", 42),
        model=g["model"],
        base_url=g.get("base_url", "https://api.openai.com/v1").rstrip("/"),
        api=g.get("api", "completions"),
        api_key_env=g.get("api_key_env", "OPENAI_API_KEY"),
        api_key_required="api_key_env" in g,
        temperature=g.get("temperature", 1.0),
        top_p=g.get("top_p", 1.0),
        max_tokens=g.get("max_tokens", 3072),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        extra_body=g.get("extra_body", {}),
        concurrency=g.get("concurrency", batch),
        timeout=g.get("timeout", DEFAULT_TIMEOUT),
        connect_timeout=g.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        stall=_stall(g.get("stall", {})),
        retries=g.get("retries", 5),
        backoff=g.get("backoff", 2.0),
        filters=_filters(g.get("filters") or {}),
        novelty=_novelty(g.get("novelty") or {}, ctx),
    )


def _seed_task(record: Any, where: Location) -> Task:
    """A seed line as Alpaca's seed_tasks.jsonl writes it ({instruction, instances: [{input, output}]}) or flat
    ({instruction, input, output})."""
    if not isinstance(record, dict):
        raise RecordError(Problem(f"a seed task is a JSON object, got {type(record).__name__}", where))
    instance = record
    if "instances" in record:
        instances = record["instances"]
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            message = "needs at least one {input, output} object"
            raise RecordError(Problem(message, Location(where.file, where.line, field="instances")))
        instance = instances[0]
    values = {"instruction": record.get("instruction"), "input": instance.get("input", ""), "output": instance.get("output")}
    for key, value in values.items():
        if not isinstance(value, str):
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise RecordError(Problem(f"must be a string, is {got}", Location(where.file, where.line, field=key)))
    return Task(**values)


def read_seeds(path: Path) -> list[Task]:
    """The seed tasks of a JSON lines file (or a .json array); a bad record is a located RecordError."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(Problem(f"cannot read seed tasks: {exc}", Location(name))) from None
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(Problem(f"invalid JSON: {exc.msg}", Location(name, exc.lineno))) from None
        if not isinstance(records, list):
            raise RecordError(Problem("a .json seed file holds a JSON array of tasks", Location(name, 1)))
        tasks = [_seed_task(r, Location(name, record=str(i))) for i, r in enumerate(records)]
    else:
        tasks = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(Problem(f"invalid JSON: {exc.msg}", Location(name, number))) from None
            tasks.append(_seed_task(record, Location(name, number)))
    if not tasks:
        raise RecordError(Problem("no seed tasks", Location(name)))
    return tasks
