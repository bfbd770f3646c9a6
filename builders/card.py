"""The dataset card (README.md): a YAML header the Hub and `datasets` read, and a body a person reads."""

from __future__ import annotations

from typing import Any

import yaml
from dsc.builders.manifest import tokenizer_identity
from dsc.compiler.pipeline import Compiled, package_features_yaml

_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n records."""
    for bound, label in _SIZES:
        if n < bound:
            return label
    return "n>10M"


def card_header(compiled: Compiled, split_info: dict[str, dict[str, int]], fingerprint: str) -> dict[str, Any]:
    """The YAML header. `fingerprint` (a hash of the data files) sits in the config's description because
    `datasets.load_dataset(folder)` keys its cache on the header alone: the header must change whenever the data does."""
    spec = compiled.spec
    total = sum(info["num_examples"] for info in split_info.values())
    terms = {"license_name": spec.card.license_name, "license_link": spec.card.license_link} if spec.license == "other" else {}
    sources = {"source_datasets": list(spec.card.source_datasets)} if spec.card.source_datasets else {}
    return {
        "pretty_name": spec.pretty_name,
        "license": spec.license,
        **terms,
        "language": list(spec.language),
        **sources,
        "task_categories": list(spec.task_categories),
        "size_categories": [size_category(total)],
        "tags": ["dsc", "sft", "tokenized"],
        "configs": [
            {
                "config_name": "default",
                "description": f"dsc package {spec.name}, data fingerprint {fingerprint}",
                "data_files": [{"split": name, "path": f"data/{name}-*.parquet"} for name in split_info],
            }
        ],
        "dataset_info": {
            "config_name": "default",
            "features": package_features_yaml(),
            "splits": [
                {"name": name, "num_bytes": info["num_bytes"], "num_examples": info["num_examples"]}
                for name, info in split_info.items()
            ],
            "download_size": sum(info["download_size"] for info in split_info.values()),
            "dataset_size": sum(info["num_bytes"] for info in split_info.values()),
        },
    }


def _fence(text: str) -> str:
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


PROMPT_COLUMNS = (
    "rendered with the templates below and tokenized with exactly masked labels (prompt tokens -100, every response",
    "token and the EOS trained). Load it with `datasets.load_dataset(\"<this folder or repo>\")`.",
    "",
    "## Columns",
    "",
    "| column | type | meaning |",
    "| --- | --- | --- |",
    "| input_ids | list of int32 | prompt tokens then response tokens then EOS |",
    "| labels | list of int32 | -100 on prompt tokens, the token id on response tokens and EOS |",
    "| prompt | string | the rendered prompt text |",
    "| response | string | the rendered response text (without EOS) |",
)
CHAT_COLUMNS = (
    "rendered with the model's chat template and tokenized as one text, as `apply_chat_template(..., tokenize=True)`",
    "does; every trained turn's tokens (an assistant's text, tool calls and end-of-turn token) keep their ids as labels,",
    "all others are -100. Load it with `datasets.load_dataset(\"<this folder or repo>\")`.",
    "",
    "## Columns",
    "",
    "| column | type | meaning |",
    "| --- | --- | --- |",
    "| input_ids | list of int32 | the whole conversation as the chat template renders it |",
    "| labels | list of int32 | the token id on trained turns, -100 elsewhere |",
    "| prompt | string | the rendered conversation up to the last trained turn |",
    "| response | string | the rest: the last trained turn and what follows it (prompt + response is the whole text) |",
)


def card_body(compiled: Compiled) -> str:
    """What the package is, its templates, one rendered example, counts and token statistics."""
    spec = compiled.spec
    c = compiled.counts
    lines = [
        f"# {spec.pretty_name}",
        "",
        spec.description or f"A dataset package built by dsc from `{spec.path.name}`.",
        "",
        f"Built by [dsc](https://pypi.org/project/dsc/) from the format spec `{spec.path.name}`: every record was validated,",
        *(CHAT_COLUMNS if spec.chat is not None else PROMPT_COLUMNS),
        "| source_id | string | `file#row` of the source record |",
        "",
        "## Templates",
        "",
    ]
    if spec.chat is not None and spec.chat.template is None:
        lines += ["`templates.chat`: the tokenizer's own chat template (its hash is the tokenizer's, in `manifest.json`).", ""]
    for t in spec.templates:
        lines += [f"`{t.key}`" + (f" (from `{t.file.name}`)" if t.file else ""), "", _fence(t.text), ""]
    train = compiled.spills["train"]
    if train.rows:
        (first,) = train.walk([(0, 1)], ["prompt", "response"])
        example = first.to_pylist()[0]
        lines += ["## Example", "", "Prompt:", "", _fence(example["prompt"]), "", "Response:", "", _fence(example["response"]), ""]
    tok = compiled.tokenizer
    lines += [
        "## Counts",
        "",
        f"- records read: {c['read']}",
        f"- invalid: {sum(c['invalid'].values())}" + "".join(f"\n  - {k}: {v}" for k, v in sorted(c["invalid"].items())),
        f"- dropped: {sum(c['dropped'].values())}" + "".join(f"\n  - {k}: {v}" for k, v in sorted(c["dropped"].items())),
        f"- truncated: {c['truncated']}",
        f"- boundary drift (one encode of prompt+response would differ): {c['boundary_drift']}",
    ]
    if "span_fallback" in c:
        lines.append(f"- conversations placed by the generation-prompt rule (rendered differently in context): {c['span_fallback']}")
    lines += [f"- kept in {name}: {n}" for name, n in c["kept"].items()]
    lines += [
        "",
        "## Tokens",
        "",
        f"Tokenizer `{tokenizer_identity(compiled)['name']}` (sha256 {tok.sha256[:12]}), EOS `{tok.eos_token}`.",
        "",
        "| split | records | tokens | trainable | min | mean | p50 | p95 | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in compiled.spills:
        t = compiled.tokens[name]
        length = t.get("length", {})
        lines.append(
            f"| {name} | {t['records']} | {t['tokens']} | {t['trainable']} | "
            + " | ".join(str(length.get(k, "-")) for k in ("min", "mean", "p50", "p95", "max"))
            + " |"
        )
    share = compiled.tokens["total"]["trainable_share"]
    lines += ["", f"Trainable share of all tokens: {share:.1%}.", ""]
    if spec.card.homepage or spec.card.source_datasets:
        lines += ["## Source", ""]
        lines += [f"- homepage: {spec.card.homepage}"] if spec.card.homepage else []
        lines += [f"- source datasets: {', '.join(spec.card.source_datasets)}"] if spec.card.source_datasets else []
        lines.append("")
    if spec.card.citation:
        lines += ["## Citation", "", "```bibtex", spec.card.citation.strip(), "```", ""]
    lines += ["See `manifest.json` for input hashes, versions and the resolved spec.", ""]
    return "\n".join(lines)


def render_card(
    compiled: Compiled, split_info: dict[str, dict[str, int]], fingerprint: str, sections: list[str] | None = None
) -> str:
    """The whole README.md; `sections` (markdown from extra writers, such as the launcher's) follow the body."""
    header = yaml.safe_dump(card_header(compiled, split_info, fingerprint), sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{card_body(compiled)}" + "".join(f"\n{s.rstrip()}\n" for s in sections or [])
