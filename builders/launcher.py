"""The training launcher every package carries: train.py, launch.sh, their configs, and training.json.

train.py, launch.sh and the two distributed configs are fixed files (builders/launcher_files/) so they can be read,
linted and tested as they are; what varies by package is training.json: the method, the model, the spec's overrides
and every method's recipe (compiler/training.py), which train.py resolves at run time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dsc.builders.package import Extra
from dsc.compiler.pipeline import Compiled
from dsc.compiler.spec import spec_schema
from dsc.compiler.training import RECIPE_SOURCES, RECIPES, TrainingSpec, default_training

FILES = Path(__file__).resolve().parent / "launcher_files"
COPIED = ("train.py", "launch.sh", "accelerate_fsdp.yaml", "ds_zero3.json")


def plan(compiled: Compiled) -> TrainingSpec:
    """The spec's `training:` section, or the default every package gets without one."""
    spec = compiled.spec
    return spec.training or default_training(spec.tokenizer.name)


def _value_type(schema: dict[str, Any]) -> str:
    """How train.py parses a command-line value for a key, from the key's JSON Schema."""
    if "oneOf" in schema:
        return "list"  # a string or a list of strings: given comma-separated on the command line
    if "enum" in schema:
        kinds = {type(v).__name__ for v in schema["enum"]}
        return "bool_or_auto" if "bool" in kinds else "str"
    return {"integer": "int", "number": "float", "boolean": "bool"}.get(schema["type"], "str")


def training_json(training: TrainingSpec) -> dict[str, object]:
    """What train.py reads: the method and model, the spec's overrides, each method's recipe with its source, and
    the type of every key (from the spec schema) so it can parse command-line overrides."""
    properties = spec_schema()["properties"]["training"]["properties"]
    return {
        "method": training.method,
        "model": training.model,
        "overrides": dict(training.overrides),
        "recipe_sources": RECIPE_SOURCES,
        "recipes": RECIPES,
        "types": {key: _value_type(schema) for key, schema in properties.items() if key not in ("method", "model")},
    }


def _card(training: TrainingSpec) -> str:
    chosen = "the spec's `training:` section" if training.from_spec else "dsc's default (the spec has no `training:`)"
    return f"""## Train on it

This package carries a launcher: `train.py` (transformers + peft, reads `data/` with pyarrow, evaluates on the
validation split, resumes from its checkpoints), `launch.sh` (one process per GPU, pinned with CUDA_VISIBLE_DEVICES,
or the CPU; FSDP2 via `accelerate_fsdp.yaml` for full fine-tuning across several GPUs, DDP for adapters, DeepSpeed
ZeRO-3 via `ds_zero3.json` with `--backend deepspeed`) and `training.json` (method, model, recipes).
Method `{training.method}` on `{training.model}`, from {chosen}; recipe: {RECIPE_SOURCES[training.method]}.

```bash
./launch.sh --dry-run                          # devices, batch plan, command and every resolved setting; nothing run
./launch.sh                                    # all visible GPUs; the global batch is kept by gradient accumulation
./launch.sh --gpus 1 --method lora --learning_rate 1e-4 --num_train_epochs 1
./launch.sh --packing                          # padding-free batches (full, lora, qlora)
```
"""


def write_launcher(stage: Path, compiled: Compiled) -> Extra:
    """Write the launcher files into the package being staged; record them in the manifest and the card."""
    training = plan(compiled)
    for name in COPIED:
        shutil.copyfile(FILES / name, stage / name)
    (stage / "launch.sh").chmod(0o755)
    config = training_json(training)
    (stage / "training.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    manifest = {
        "launcher": {
            "method": training.method,
            "model": training.model,
            "from_spec": training.from_spec,
            "files": [*COPIED, "training.json"],
            "run": "./launch.sh --dry-run",
        }
    }
    return Extra(manifest=manifest, card=_card(training))
