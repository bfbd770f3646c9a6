"""Fine-tune a causal language model on this dataset package (written by dsc; needs no dsc to run).

Reads the package's own Parquet splits (input_ids and labels, prompt tokens already -100), takes the method, the model
and every hyperparameter from training.json beside this file, and lets any of them be overridden on the command line:

    python train.py                                   # the package's method and recipe, one process
    python train.py --method lora --learning_rate 1e-4 --max_steps 100
    python train.py --packing                         # padding-free batches (full, lora, qlora)
    python train.py --resume_from_checkpoint latest   # go on from the newest checkpoint in output_dir
    python train.py --dry_run --world_size 8          # print the resolved configuration, train nothing

launch.sh runs this file under torchrun or accelerate when there are several GPUs. Needs only torch, transformers,
peft, accelerate and pyarrow (bitsandbytes for qlora, deepspeed for --deepspeed), and no network for a local model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "training.json").read_text(encoding="utf-8"))
MANIFEST = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
IGNORE = -100
PREFIX_METHODS = ("prefix", "ptuning")
PEFT_METHODS = ("lora", "qlora", "prefix", "ptuning", "prompt")
PACKING_METHODS = ("full", "lora", "qlora")
"""Prefix and prompt methods put virtual tokens before every sequence, which a packed row of several records lacks."""


# ---- configuration: training.json's recipe for the method, the spec's overrides, then the command line ----


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _typed(key: str) -> Any:
    """An argparse type for `key`, as training.json's "types" says ('none' gives None)."""
    kind = CONFIG["types"][key]

    def convert(text: str) -> Any:
        value = text.strip()
        if value.lower() in ("none", "null"):
            return None
        if kind == "bool_or_auto":
            return "auto" if value.lower() == "auto" else _bool(value)
        if kind == "list":
            return value if value == "all-linear" else [part.strip() for part in value.split(",") if part.strip()]
        return {"int": int, "float": float, "bool": _bool}.get(kind, str)(value)

    return convert


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Fine-tune on the dsc package '{MANIFEST['name']}'. Defaults come from training.json.",
    )
    keys = sorted({k for recipe in CONFIG["recipes"].values() for k in recipe})
    method = CONFIG["method"]
    current = {**CONFIG["recipes"][method], **CONFIG["overrides"]}
    parser.add_argument("--method", choices=sorted(CONFIG["recipes"]), help=f"fine-tuning method (package: {method})")
    parser.add_argument("--model", help=f"Hub id or local folder of the model (package: {CONFIG['model']})")
    for key in keys:
        names = [f"--{key}"] + ([f"--{key.replace('_', '-')}"] if "_" in key else [])
        shown = f"{method}: {current[key]}" if key in current else f"not used by {method}"
        parser.add_argument(*names, dest=key, type=_typed(key), default=argparse.SUPPRESS, metavar="VALUE", help=shown)
    parser.add_argument(
        "--deepspeed", help="a DeepSpeed JSON config (launch.sh --backend deepspeed passes ds_zero3.json)"
    )
    parser.add_argument(
        "--packing",
        action="store_true",
        help="padding-free batches: each batch's records end to end in one row, position_ids restarting per record, "
        "no token attending across records (full, lora, qlora)",
    )
    parser.add_argument(
        "--resume_from_checkpoint",
        "--resume-from-checkpoint",
        default="auto",
        metavar="PATH|latest|no",
        help="a checkpoint folder, 'latest' (the newest in output_dir; an error if none), or 'no' (start over); "
        "default: the newest in output_dir if there is one",
    )
    parser.add_argument("--dry_run", "--dry-run", action="store_true", help="print the resolved configuration and exit")
    parser.add_argument("--check", action="store_true", help="check the packages and checkpoint the run needs, and exit")
    parser.add_argument("--world_size", type=int, help="processes to plan for in a dry run (default: $WORLD_SIZE or 1)")
    parser.add_argument(
        "--print",
        dest="print_keys",
        metavar="KEY[,KEY...]",
        help="print resolved values (or layer_class), space-separated on one line, and exit",
    )
    return parser


def resolve(argv: list[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
    """The settings this run uses; a setting that does not apply to the chosen method is an error."""
    args = _parser().parse_args(argv)
    method = args.method or CONFIG["method"]
    recipe = CONFIG["recipes"][method]
    given = {k: v for k, v in vars(args).items() if k in {k for r in CONFIG["recipes"].values() for k in r}}
    for key in given:
        if key not in recipe:
            uses = [m for m, r in CONFIG["recipes"].items() if key in r]
            sys.exit(f"train.py: --{key} does not apply to method '{method}' (it applies to {', '.join(uses)})")
    spec = {k: v for k, v in CONFIG["overrides"].items() if k in recipe}
    for key in sorted(set(CONFIG["overrides"]) - set(spec)):
        print(f"train.py: the spec's {key} does not apply to method '{method}'; ignored", file=sys.stderr)
    settings = {"method": method, "model": args.model or CONFIG["model"], **recipe, **spec, **given}
    if method in PREFIX_METHODS and settings["gradient_checkpointing"]:
        sys.exit(
            "train.py: gradient checkpointing drops the KV cache that carries the prefix; use it with other methods"
        )
    world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
    per_step = settings["per_device_train_batch_size"] * world
    settings["world_size"] = world
    settings["gradient_accumulation_steps"] = max(1, round(settings["global_batch_size"] / per_step))
    settings["effective_batch_size"] = per_step * settings["gradient_accumulation_steps"]
    settings["output_dir"] = settings["output_dir"] or str(HERE / "output" / method)
    settings["packing"] = args.packing
    settings["resume_from_checkpoint"] = args.resume_from_checkpoint
    return settings, args


def checkpoint_state(path: Path) -> dict[str, Any] | None:
    """A checkpoint's trainer state, or None when the checkpoint is not complete: Trainer writes trainer_state.json
    last, and not atomically, so a run killed while saving leaves it missing, empty or cut short."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("global_step"), int) else None


def last_checkpoint(output_dir: str) -> Path | None:
    """The newest complete checkpoint in output_dir (an incomplete one, the last save of a killed run, is skipped)."""
    folder = Path(output_dir)
    steps = [
        (int(match.group(1)), path)
        for path in (folder.iterdir() if folder.is_dir() else [])
        if (match := re.fullmatch(r"checkpoint-(\d+)", path.name)) and checkpoint_state(path) is not None
    ]
    return max(steps)[1] if steps else None


def resume_point(settings: dict[str, Any]) -> Path | None:
    """The checkpoint this run goes on from (None: from step 0), or exit with why not."""
    asked = settings["resume_from_checkpoint"]
    if asked.lower() in ("no", "none", "false"):
        return None
    if asked.lower() in ("auto", "latest"):
        found = last_checkpoint(settings["output_dir"])
        if found is None and asked.lower() == "latest":
            sys.exit(f"train.py: --resume_from_checkpoint latest: no complete checkpoint-N folder in {settings['output_dir']}")
        return found
    path = Path(asked)
    if checkpoint_state(path) is None:
        sys.exit(
            f"train.py: --resume_from_checkpoint {asked}: not a complete checkpoint (its trainer_state.json is missing "
            "or cut short: a save that did not finish)"
        )
    return path


def missing_requirements(settings: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """What this run needs and lacks, found without importing anything heavy, so it fails before any loading."""
    method = settings["method"]
    needs = {"torch": "torch", "transformers": "transformers", "accelerate": "accelerate", "pyarrow": "pyarrow"}
    if method in PEFT_METHODS:
        needs["peft"] = "peft"
    if method == "qlora":
        needs["bitsandbytes"] = "bitsandbytes (QLoRA loads the model in 4 bits with it; it needs a CUDA GPU)"
    if args.deepspeed:
        needs["deepspeed"] = "deepspeed (--backend deepspeed)"
    problems = [f"pip install {why}" for module, why in needs.items() if importlib.util.find_spec(module) is None]
    if settings["packing"] and method not in PACKING_METHODS:
        problems.append(
            f"--packing works with {', '.join(PACKING_METHODS)}: method '{method}' puts virtual tokens before each "
            "sequence, and a packed row holds several"
        )
    return problems


def check(settings: dict[str, Any], args: argparse.Namespace) -> None:
    """Exit with every problem a run would hit after minutes of loading: missing packages, a bad checkpoint."""
    problems = missing_requirements(settings, args)
    if problems:
        sys.exit(f"train.py: method '{settings['method']}' cannot run here:\n  " + "\n  ".join(problems))
    resume_point(settings)


# ---- data: the package's Parquet splits, read with pyarrow; a right-padding or a padding-free collator ----


class Records:
    """One split's input_ids and labels as a map-style dataset (what a torch DataLoader indexes)."""

    def __init__(self, table: Any) -> None:
        self.input_ids = table.column("input_ids").combine_chunks()
        self.labels = table.column("labels").combine_chunks()
        self.lengths = self.input_ids.value_lengths().to_pylist()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids[i].as_py(), "labels": self.labels[i].as_py()}


def load_splits() -> dict[str, Records]:
    """train (and validation, if the package has one), the columns the model reads, from the manifest's files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files: dict[str, list[Path]] = {}
    for rel in MANIFEST["files"]:
        split = Path(rel).name.split("-", 1)[0]
        files.setdefault(split, []).append(HERE / rel)
    tables = {
        split: pa.concat_tables([pq.read_table(path, columns=["input_ids", "labels"]) for path in sorted(paths)])
        for split, paths in files.items()
    }
    return {split: Records(table) for split, table in tables.items() if table.num_rows}


def padding_share(lengths: list[int], batch_size: int, multiple_of: int, seed: int) -> float:
    """The share of padding in padded batches, over one shuffled pass of batches like those the Trainer's random
    sampler draws (each padded to its longest record, rounded up to multiple_of)."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        width = math.ceil(max(batch) / multiple_of) * multiple_of
        real += sum(batch)
        padded += width * len(batch)
    return 1 - real / padded if padded else 0.0


class Collator:
    """Right-pads a batch: input_ids with the pad id, labels with -100, attention_mask 0 on padding."""

    def __init__(self, pad_id: int, multiple_of: int = 1) -> None:
        self.pad_id = pad_id
        self.multiple_of = multiple_of

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        width = math.ceil(longest / self.multiple_of) * self.multiple_of
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(row["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


class PackingCollator:
    """Padding-free: the batch's records end to end in one row, with position_ids restarting at 0 in each record and
    no attention_mask. From such position_ids transformers 5 (masking_utils.find_packed_sequence_indices, used when
    there is neither an attention_mask nor a KV cache: load_model turns the cache off) builds a block-diagonal causal
    mask for sdpa and eager attention and runs flash attention's varlen kernels, so no token attends across records.
    Each record's first label is -100: the loss shifts labels by one, and the last token of one record must not be
    trained to predict the first token of the next. Unpacked, that label is never a target either, so the loss of a
    packed batch equals the loss of the same records padded."""

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for row in rows:
            input_ids += row["input_ids"]
            labels += [IGNORE, *row["labels"][1:]]
            positions += range(len(row["input_ids"]))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }


# ---- model: tokenizer check, load (bf16 or 4-bit), PEFT config ----


def load_tokenizer(settings: dict[str, Any]) -> Any:
    """The model's tokenizer, checked against the one that tokenized this package (their ids must agree)."""
    from transformers import AutoTokenizer

    name = settings["tokenizer"] or settings["model"]
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=settings["trust_remote_code"])
    built = MANIFEST["tokenizer"]
    eos_id = tokenizer.convert_tokens_to_ids(built["eos_token"])
    if eos_id != built["eos_id"]:
        sys.exit(
            f"train.py: the package was tokenized with '{built['name']}' "
            f"(EOS {built['eos_token']!r} = id {built['eos_id']}), "
            f"but {name}'s tokenizer gives that token id {eos_id}: rebuild the package with this model's tokenizer "
            f"(spec key tokenizer: {name}) or pick a model that shares the package's tokenizer"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(
            built["pad_id"] if built["pad_id"] is not None else eos_id
        )
    return tokenizer


def _bf16_setting(settings: dict[str, Any]) -> bool | None:
    """bf16 as set: True, False, or None for "auto" (the GPU decides)."""
    return None if settings["bf16"] == "auto" else bool(settings["bf16"])


def _bf16(settings: dict[str, Any]) -> bool:
    import torch

    bf16 = _bf16_setting(settings)
    if bf16 is None:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bf16


def load_model(settings: dict[str, Any], tokenizer: Any, checkpointing: bool) -> Any:
    """The model, with the method's PEFT adapter when it has one.

    The frozen base of a PEFT method is loaded in bf16 (where supported); full fine-tuning keeps fp32 master weights
    and computes in bf16 through mixed precision, as Alpaca's FSDP recipe does (AdamW on bf16 weights loses updates).
    """
    import torch
    from transformers import AutoModelForCausalLM

    method = settings["method"]
    bf16 = _bf16(settings)
    kwargs: dict[str, Any] = {"trust_remote_code": settings["trust_remote_code"]}
    if settings["attn_implementation"]:
        kwargs["attn_implementation"] = settings["attn_implementation"]
    kwargs["dtype"] = torch.bfloat16 if bf16 and method != "full" else torch.float32
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(**qlora_quantization(settings, bf16))
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(settings["model"], **kwargs)
    rows, needed = model.get_input_embeddings().num_embeddings, MANIFEST["tokenizer"]["vocab_size"]
    if rows < needed:
        sys.exit(f"train.py: {settings['model']} embeds {rows} tokens; the package's tokenizer has {needed}")
    model.config.use_cache = False
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if method == "full":
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    model = get_peft_model(model, peft_config(settings))
    model.print_trainable_parameters()
    return model


def qlora_quantization(settings: dict[str, Any], bf16: bool | None) -> dict[str, Any]:
    """BitsAndBytesConfig arguments: 4-bit weights, computing in bf16 (fp16 on GPUs without it). The compute dtype is
    a torch dtype's name, which BitsAndBytesConfig takes; None (bf16 "auto", unresolved in a dry run) says the rule."""
    compute_dtype = "bfloat16 if the GPU has it, else float16" if bf16 is None else ("bfloat16" if bf16 else "float16")
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": settings["bnb_4bit_quant_type"],
        "bnb_4bit_use_double_quant": settings["bnb_4bit_use_double_quant"],
        "bnb_4bit_compute_dtype": compute_dtype,
    }


def peft_arguments(settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The method's peft config class and its arguments, field for field (P-Tuning v2 is deep prefix tuning:
    PrefixTuningConfig). Plain values: a dry run prints them without importing peft, and peft_config builds from them."""
    method = settings["method"]
    causal = {"task_type": "CAUSAL_LM"}  # peft.TaskType.CAUSAL_LM's value, which peft takes as a string
    if method in ("lora", "qlora"):
        return "LoraConfig", {
            **causal,
            "r": settings["lora_r"],
            "lora_alpha": settings["lora_alpha"],
            "lora_dropout": settings["lora_dropout"],
            "target_modules": settings["lora_target_modules"],
        }
    if method in PREFIX_METHODS:
        return "PrefixTuningConfig", {
            **causal,
            "num_virtual_tokens": settings["num_virtual_tokens"],
            "prefix_projection": settings["prefix_projection"],
            "encoder_hidden_size": settings["encoder_hidden_size"],
        }
    return "PromptTuningConfig", {
        **causal,
        "num_virtual_tokens": settings["num_virtual_tokens"],
        "prompt_tuning_init": settings["prompt_tuning_init"],
        "prompt_tuning_init_text": settings["prompt_tuning_init_text"],
        "tokenizer_name_or_path": settings["tokenizer"] or settings["model"],
    }


def peft_config(settings: dict[str, Any]) -> Any:
    """The method's peft config, from peft_arguments."""
    import peft

    name, arguments = peft_arguments(settings)
    return getattr(peft, name)(**arguments)


def layer_class(settings: dict[str, Any]) -> str:
    """The model's decoder layer class(es), which FSDP wraps one by one (built on the meta device: no memory). Its
    config.json is found first (a local folder, or the Hub through its cache): a model out of reach, such as a Hub id
    while offline, fails in a moment instead of after the training stack's ~6 s of imports."""
    name = settings["model"]
    if not (Path(name) / "config.json").is_file():
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(name, "config.json")
        except Exception as exc:  # noqa: BLE001 - offline, no such repo, no access: each is "cannot read it"
            reason = str(exc).partition("\n")[0]
            sys.exit(f"train.py: cannot read {name}'s config.json ({type(exc).__name__}): {reason}")

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name, trust_remote_code=settings["trust_remote_code"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=settings["trust_remote_code"])
    return ",".join(sorted(model._no_split_modules or []))


# ---- the run ----


def training_arguments(settings: dict[str, Any], args: argparse.Namespace, has_validation: bool) -> Any:
    """TrainingArguments, made before the model is loaded: they start torch.distributed, which DeepSpeed ZeRO-3 and
    FSDP's cpu_ram_efficient_loading need in place to load the weights sharded or on rank 0 only."""
    import torch
    from transformers import TrainingArguments

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    eval_strategy = settings["eval_strategy"]
    if eval_strategy == "auto":
        # Each epoch, whatever stops the run: under max_steps the Trainer still ends an epoch when the data runs out,
        # and ends the last, partial one when max_steps is reached, so there is always at least one evaluation.
        eval_strategy = "epoch" if has_validation else "no"
    return TrainingArguments(
        output_dir=settings["output_dir"],
        num_train_epochs=settings["num_train_epochs"],
        max_steps=settings["max_steps"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler_type"],
        warmup_steps=settings["warmup_ratio"],  # transformers 5: a float below 1 is a ratio of the total steps
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        optim=settings["optim"],
        per_device_train_batch_size=settings["per_device_train_batch_size"],
        per_device_eval_batch_size=settings["per_device_train_batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        # Under FSDP, accelerate.yaml's fsdp_activation_checkpointing does it (without a redundant all-gather).
        activation_checkpointing=settings["gradient_checkpointing"] and not fsdp,
        bf16=_bf16(settings),
        use_cpu=not torch.cuda.is_available(),
        logging_steps=settings["logging_steps"],
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings["save_steps"],
        save_total_limit=settings["save_total_limit"],
        eval_strategy=eval_strategy,
        eval_steps=settings["eval_steps"],
        seed=settings["seed"],
        report_to=settings["report_to"],
        remove_unused_columns=False,
        # Packed rows have no padding and no attention_mask to count by.
        include_num_input_tokens_seen="all" if settings["packing"] else "non_padding",
        deepspeed=args.deepspeed,
    )


def batch_plan(settings: dict[str, Any]) -> str:
    """The batch arithmetic in one line: per device x processes x accumulation = the global batch."""
    return (
        f"{settings['per_device_train_batch_size']} per device x {settings['world_size']} processes x "
        f"{settings['gradient_accumulation_steps']} accumulation steps = global batch {settings['effective_batch_size']}"
    )


def dry_run(settings: dict[str, Any], args: argparse.Namespace) -> None:
    """Print what a run would use: the settings, the batch arithmetic, the method's adapter config, and the packages
    it would need but cannot import here. Nothing heavy is imported: a plan takes well under a second."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--dry-run | head` ends quietly, as other Unix tools do
    plan = dict(settings)
    if settings["method"] in PEFT_METHODS:
        name, arguments = peft_arguments(settings)
        plan["peft_config"] = {"class": name, **arguments}
    if settings["method"] == "qlora":
        plan["quantization"] = qlora_quantization(settings, _bf16_setting(settings))
    plan["missing"] = missing_requirements(settings, args)
    plan["package"] = {
        "name": MANIFEST["name"],
        "records": MANIFEST["counts"]["kept"],
        "tokenizer": MANIFEST["tokenizer"]["name"],
    }
    print(json.dumps(plan, indent=2, default=str))


def refuse_data_parallel() -> None:
    """One process per GPU: a single process that sees several GPUs would be wrapped in nn.DataParallel by the
    Trainer, multiplying the global batch by the GPU count and running far slower than DDP."""
    import torch

    if "WORLD_SIZE" not in os.environ and torch.cuda.device_count() > 1:
        sys.exit(
            f"train.py: {torch.cuda.device_count()} GPUs are visible to one process; run ./launch.sh --gpus N "
            "(one process per GPU), or pin one with CUDA_VISIBLE_DEVICES=0"
        )


def report_padding(splits: dict[str, Records], settings: dict[str, Any], multiple_of: int) -> float:
    """Print the share of padding in the training batches without --packing, and with it (none)."""
    share = padding_share(
        splits["train"].lengths, settings["per_device_train_batch_size"], multiple_of, settings["seed"]
    )
    after = "0.0% with --packing (this run)" if settings["packing"] else "0.0% with --packing"
    print(f"train.py: padding is {share:.1%} of the tokens in padded batches; {after}", file=sys.stderr)
    return share


def main(argv: list[str] | None = None) -> None:
    settings, args = resolve(argv)
    if args.print_keys:
        keys = args.print_keys.split(",")
        print(" ".join(layer_class(settings) if key == "layer_class" else str(settings[key]) for key in keys))
        return
    if args.dry_run:
        dry_run(settings, args)
        return
    check(settings, args)
    if args.check:
        return

    import torch
    from transformers import Trainer

    refuse_data_parallel()
    if settings["effective_batch_size"] != settings["global_batch_size"]:
        print(
            f"train.py: {batch_plan(settings)}, not the recipe's {settings['global_batch_size']}",
            file=sys.stderr,
        )
    resume = resume_point(settings)
    tokens_before = 0
    if resume is not None:
        state = checkpoint_state(resume)
        assert state is not None  # resume_point checked it
        tokens_before = state.get("num_input_tokens_seen", 0)
        print(
            f"train.py: resuming from {resume} (step {state['global_step']}); --resume_from_checkpoint no starts over",
            file=sys.stderr,
        )
    splits = load_splits()
    multiple_of = 8 if torch.cuda.is_available() else 1
    share = report_padding(splits, settings, multiple_of)
    training_args = training_arguments(settings, args, "validation" in splits)
    tokenizer = load_tokenizer(settings)
    model = load_model(settings, tokenizer, training_args.activation_checkpointing)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation") if training_args.eval_strategy != "no" else None,
        data_collator=PackingCollator() if settings["packing"] else Collator(tokenizer.pad_token_id, multiple_of),
        processing_class=tokenizer,
    )
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    trainer.save_model(settings["output_dir"])
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        tokens = trainer.state.num_input_tokens_seen - tokens_before  # this run's: the state counts from step 0
        summary = {
            "method": settings["method"],
            "model": settings["model"],
            "steps": result.global_step,
            "resumed_from": str(resume) if resume else None,
            "train_loss": result.training_loss,
            "losses": [(h["step"], h["loss"]) for h in history if "loss" in h],
            "eval_losses": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
            "packing": settings["packing"],
            "padding_share_unpacked": round(share, 4),
            "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "processes": settings["world_size"],
            "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
            "seconds": round(seconds, 2),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)
            if torch.cuda.is_available()
            else None,
        }
        Path(settings["output_dir"], "train_summary.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
        print(json.dumps({k: v for k, v in summary.items() if k not in ("losses", "eval_losses")}))
        print(
            f"saved {'model' if settings['method'] == 'full' else 'adapter'} and tokenizer to {settings['output_dir']}"
        )


if __name__ == "__main__":
    main()
