"""`dsc export`: what LLaMA-Factory or Axolotl needs to train on a package, and the config lines to paste.

Both trainers take dsc's own tokens and labels as a pre-tokenized dataset with exactly the columns input_ids,
attention_mask and labels (-100 = not trained): LLaMA-Factory through `tokenized_path` (a `save_to_disk` DatasetDict
whose "train" and "validation" splits it uses as they are), Axolotl through a dataset entry with an empty `type:`.
LLaMA-Factory also gets the rendered text in its alpaca layout with a dataset_info.json entry, for a run that lets
LLaMA-Factory tokenize. The export is written beside the package (never into it, which would change what a publish
uploads), into a staging folder renamed into place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsc.builders.outputs import EXPORT, check_output
from dsc.builders.package import staging
from dsc.builders.verify import read_package
from dsc.compiler.encode import IGNORE

TRAINERS = ("llamafactory", "axolotl")
TOKENIZED_COLUMNS = ["input_ids", "attention_mask", "labels"]


@dataclass
class Exported:
    """Where an export went and the config lines that use it."""

    folder: Path
    snippet: str


def _splits(package: Path, manifest: dict[str, Any]) -> dict[str, pa.Table]:
    """Each split's shards, in order, as one table (read from the files the manifest lists)."""
    shards: dict[str, list[str]] = {}
    for rel in sorted(manifest["files"]):
        shards.setdefault(Path(rel).name.split("-", 1)[0], []).append(rel)
    return {name: pa.concat_tables([pq.read_table(package / rel) for rel in rels]) for name, rels in shards.items()}


def tokenized(table: pa.Table) -> pa.Table:
    """input_ids, attention_mask (all ones: packages hold no padding) and labels, nothing else."""
    ids = table.column("input_ids").combine_chunks()
    offsets = pc.subtract(ids.offsets, ids.offsets[0])
    ones = pa.array(np.ones(int(offsets[-1].as_py()) if len(offsets) else 0, dtype=np.int8))
    mask = pa.ListArray.from_arrays(offsets, ones)
    return pa.table({"input_ids": ids, "attention_mask": mask, "labels": table.column("labels").combine_chunks()})


def _max_length(splits: dict[str, pa.Table]) -> int:
    lengths = [pc.max(pc.list_value_length(t.column("input_ids"))).as_py() or 0 for t in splits.values() if len(t)]
    return max(lengths, default=0)


def _path(path: Path) -> str:
    """A path as a YAML scalar that survives spaces, colons and hashes (a JSON string is valid YAML)."""
    return json.dumps(str(path))


def _header(manifest: dict[str, Any]) -> str:
    tok = manifest.get("tokenizer", {})
    return (
        f"# dsc package {manifest['name']} (fingerprint {manifest['fingerprint']}), tokenized with "
        f"{tok.get('name')} (EOS {tok.get('eos_token')}): the model must use this tokenizer\n"
    )


def multi_turn(splits: dict[str, pa.Table]) -> bool:
    """Whether any record trains more than one span of tokens (every assistant turn of a conversation): the alpaca
    text route trains only the final answer, so it would lose those labels."""
    for table in splits.values():
        labels = table.column("labels").combine_chunks()
        if not len(labels):
            continue
        trained = pc.not_equal(labels.flatten(), IGNORE).to_numpy(zero_copy_only=False)
        starts = pc.subtract(labels.offsets, labels.offsets[0]).to_numpy()[:-1]
        previous = np.concatenate(([False], trained[:-1]))
        previous[starts] = False  # a record's first token starts a span if it is trained
        if (np.add.reduceat(trained & ~previous, starts) > 1).any():
            return True
    return False


def _llamafactory(stage: Path, final: Path, manifest: dict[str, Any], splits: dict[str, pa.Table]) -> str:
    import datasets

    name = f"dsc_{manifest['name']}"
    text_route = not multi_turn(splits)
    if text_route:
        # LLaMA-Factory's `empty` template adds nothing to the answer, not even the EOS: the text carries it, and
        # LLaMA-Factory's encode (add_special_tokens=False) reads the token's text back as the EOS id.
        eos = pa.scalar(manifest["tokenizer"]["eos_token"])
        info: dict[str, Any] = {}
        for split, table in splits.items():
            alpaca = pa.table(
                {
                    "instruction": table.column("prompt"),
                    "input": pa.array([""] * len(table), pa.string()),
                    "output": pc.binary_join_element_wise(table.column("response"), eos, ""),
                }
            )
            file_name = f"{manifest['name']}_{split}.parquet"
            pq.write_table(alpaca, stage / file_name)
            info[name if split == "train" else f"{name}_{split}"] = {
                "file_name": file_name,
                "formatting": "alpaca",
                "columns": {"prompt": "instruction", "query": "input", "response": "output"},
            }
        (stage / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    dataset_dict = datasets.DatasetDict(
        {split: datasets.Dataset(datasets.table.InMemoryTable(tokenized(t))) for split, t in splits.items()}
    )
    dataset_dict.save_to_disk(str(stage / "tokenized"))
    lines = [_header(manifest).rstrip("\n")]
    if text_route:
        lines += [f"dataset_dir: {_path(final)}", f"dataset: {name}"]
        lines += [f"eval_dataset: {name}_{split}" for split in splits if split != "train"]
    else:
        lines.append("# every assistant turn is trained: only dsc's tokens keep those labels (no text route)")
    lines += [
        "template: empty  # the text is already rendered by dsc",
        f"cutoff_len: {_max_length(splits)}",
    ]
    if text_route:
        lines.append("# dsc's exact tokens and labels; without the next line LLaMA-Factory tokenizes the text itself")
    lines.append(f"tokenized_path: {_path(final / 'tokenized')}")
    return "\n".join(lines) + "\n"


def _axolotl(stage: Path, final: Path, manifest: dict[str, Any], splits: dict[str, pa.Table]) -> str:
    for split, table in splits.items():
        pq.write_table(tokenized(table), stage / f"{split}.parquet")
    lines = [_header(manifest).rstrip("\n"), "datasets:"]
    lines += [f"  - path: {_path(final / 'train.parquet')}", "    ds_type: parquet", "    type:"]
    others = [split for split in splits if split != "train"]
    if others:
        lines.append("test_datasets:")
        for split in others:
            lines += [
                f"  - path: {_path(final / f'{split}.parquet')}",
                "    ds_type: parquet",
                "    split: train",
                "    type:",
            ]
        lines.append("val_set_size: 0")
    lines.append(f"sequence_len: {_max_length(splits)}")
    return "\n".join(lines) + "\n"


WRITERS = {"llamafactory": _llamafactory, "axolotl": _axolotl}
SNIPPETS = {"llamafactory": "llamafactory.yaml", "axolotl": "axolotl.yaml"}


def export(package: str | Path, to: str, output: str | Path | None = None) -> Exported:
    """Write `to`'s files for a package into `output` (default: `<package>-<to>` beside it) and return the snippet.

    The snippet (also saved as llamafactory.yaml / axolotl.yaml in the export) uses absolute paths, so it works from
    wherever the trainer is launched. `dsc-export.json` marks the folder as an export, so a later export may replace it;
    any other existing folder that is not empty, a file, or a folder holding or inside the package is refused
    (`OutputError`, before anything is written)."""
    package = Path(package).resolve()
    manifest = read_package(package)
    if to not in WRITERS:
        raise ValueError(f"unknown trainer {to!r}; one of {', '.join(TRAINERS)}")
    final = check_output(
        output if output is not None else package.parent / f"{package.name}-{to}",
        EXPORT,
        [("package", package)],
        may_nest=False,
    )
    splits = _splits(package, manifest)
    with staging(final, EXPORT) as stage:
        snippet = WRITERS[to](stage, final, manifest, splits)
        (stage / SNIPPETS[to]).write_text(snippet, encoding="utf-8")
        marker = {"format": EXPORT.format + "1", "to": to, "package": manifest["name"], "fingerprint": manifest["fingerprint"]}
        (stage / EXPORT.marker).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return Exported(final, snippet)
