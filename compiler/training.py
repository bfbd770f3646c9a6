"""The `training:` section of a format spec: the fine-tuning method, the model, and hyperparameters over a recipe.

Each method starts from a published recipe (below, with where its numbers come from), so `method` and `model` are
enough to train sensibly; any other key overrides the recipe. A spec without `training:` still gets a launcher: LoRA
on a small model that shares the spec's tokenizer (the package's token ids are only meaningful to such a model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

METHODS = ("full", "lora", "qlora", "prefix", "ptuning", "prompt")

DEFAULT_METHOD = "lora"
DEFAULT_MODEL = "Qwen/Qwen3-0.6B"
"""The model a spec without `training:` trains: small, and it shares the `qwen3` tokenizer the specs default to."""

_COMMON: dict[str, Any] = {
    # Stanford Alpaca's recipe (train.py README): 3 epochs, lr 2e-5, warmup ratio 0.03, cosine, no weight decay,
    # global batch 128 (4 GPUs x 4 per device x 8 accumulation steps), gradient clipping at 1.0 (HF's default).
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "learning_rate": 2e-5,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "optim": "adamw_torch",
    "per_device_train_batch_size": 4,
    "global_batch_size": 128,
    "gradient_checkpointing": True,
    "bf16": "auto",
    "logging_steps": 10,
    "save_steps": 1000,
    "save_total_limit": 1,
    "eval_strategy": "auto",
    "eval_steps": None,
    "seed": 42,
    "report_to": "none",
    "output_dir": None,
    "tokenizer": None,
    "trust_remote_code": False,
    "attn_implementation": None,
}

_LORA: dict[str, Any] = {
    # tloen/alpaca-lora finetune.py (commit 0003a00): r 8, alpha 16, dropout 0.05. Its targets, q_proj and v_proj,
    # are Llama's names; every linear layer is what QLoRA (Dettmers et al. 2023, section 4) found needed to match
    # full fine-tuning, and "all-linear" works for any architecture.
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
}

_PREFIX: dict[str, Any] = {"num_virtual_tokens": 128, "prefix_projection": False, "encoder_hidden_size": 512}

# Prefix methods keep the model's KV cache for the virtual tokens; transformers drops the cache in checkpointed
# layers, so these recipes train without activation checkpointing (the base is frozen, so memory stays moderate).
_NO_CHECKPOINTING = {"gradient_checkpointing": False}

RECIPES: dict[str, dict[str, Any]] = {
    "full": dict(_COMMON),
    "lora": {
        **_COMMON,
        # tloen/alpaca-lora finetune.py (commit 0003a00): lr 3e-4, batch 128 (4 per device), 3 epochs, AdamW, and
        # TrainingArguments' linear schedule with 100 warmup steps, about 0.085 of its ~1,170 steps (alpaca-cleaned's
        # 51,760 records less 2,000 for validation, / 128, x 3 epochs).
        "learning_rate": 3e-4,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.085,
        **_LORA,
    },
    "qlora": {
        **_COMMON,
        # QLoRA, artidoro/qlora scripts/finetune_guanaco_7b.sh (commit 0b46ca8): NF4 with double quantization, LoRA on
        # every linear layer with r 64, alpha 16, dropout 0.1, lr 2e-4, constant schedule after warmup ratio 0.03,
        # max grad norm 0.3, weight decay 0, batch 16 (4 per device x 4 accumulation steps), 1,875 steps x 16 = 3.05
        # epochs of its 9,846 records (so 3 epochs here); paged AdamW is qlora.py's default optimizer.
        "learning_rate": 2e-4,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.03,
        "max_grad_norm": 0.3,
        "optim": "paged_adamw_32bit",
        "per_device_train_batch_size": 4,
        "global_batch_size": 16,
        **_LORA,
        "lora_r": 64,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    },
    "ptuning": {
        **_COMMON,
        # THUDM/ChatGLM-6B ptuning/train.sh (commit ea682a6): PRE_SEQ_LEN 128, LR 2e-2, batch 1 x 16 accumulation
        # steps, 3000 steps, logging 10, save 1000, TrainingArguments' linear schedule without warmup, no prefix
        # projection (main.py's default) unless asked for.
        **_NO_CHECKPOINTING,
        "learning_rate": 2e-2,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.0,
        "max_steps": 3000,
        "per_device_train_batch_size": 1,
        "global_batch_size": 16,
        **_PREFIX,
    },
    "prefix": {
        **_COMMON,
        # Prefix-tuning (Li & Liang 2021): prefix length 10 through a reparameterization MLP of width 512,
        # lr 5e-5, 10 epochs, batch 5, linear schedule.
        **_NO_CHECKPOINTING,
        "num_train_epochs": 10.0,
        "learning_rate": 5e-5,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.0,
        "per_device_train_batch_size": 5,
        "global_batch_size": 5,
        **_PREFIX,
        "num_virtual_tokens": 10,
        "prefix_projection": True,
    },
    "prompt": {
        **_COMMON,
        # Prompt tuning (Lester et al. 2021): 100 soft tokens initialized from sampled vocabulary, Adafactor,
        # lr 0.3, weight decay 1e-5, batch 32, constant schedule.
        "learning_rate": 0.3,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "weight_decay": 1e-5,
        "optim": "adafactor",
        "global_batch_size": 32,
        "num_virtual_tokens": 100,
        "prompt_tuning_init": "SAMPLE_VOCAB",
        "prompt_tuning_init_text": None,
    },
}
"""Every method's defaults; a key a method's recipe lacks does not apply to that method."""

RECIPE_SOURCES = {
    "full": "Stanford Alpaca (Taori et al. 2023): lr 2e-5, 3 epochs, warmup 0.03, cosine, weight decay 0, batch 128",
    "lora": "tloen/alpaca-lora finetune.py (0003a00): r 8, alpha 16, dropout 0.05, lr 3e-4, linear, 100 warmup steps "
    "(0.085), batch 128, 3 epochs; all linear layers as in QLoRA section 4",
    "qlora": "QLoRA, artidoro/qlora scripts/finetune_guanaco_7b.sh (0b46ca8): NF4 double-quant, r 64, alpha 16, "
    "dropout 0.1, lr 2e-4, constant, warmup 0.03, max grad norm 0.3, batch 16",
    "ptuning": "ChatGLM-6B P-Tuning v2 (ptuning/train.sh, ea682a6): pre_seq_len 128, lr 2e-2, batch 16, 3000 steps",
    "prefix": "Prefix-tuning (Li & Liang 2021): prefix 10 via a 512-wide MLP, lr 5e-5, 10 epochs, batch 5",
    "prompt": "Prompt tuning (Lester et al. 2021): 100 tokens from sampled vocab, Adafactor, lr 0.3, batch 32",
}


@dataclass(frozen=True)
class TrainingSpec:
    """What to train on the package: a method, a model, and the keys the spec set over the method's recipe."""

    method: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    from_spec: bool = True

    def resolved(self) -> dict[str, Any]:
        """The recipe with the spec's overrides: every hyperparameter the launcher will use."""
        return {**RECIPES[self.method], **self.overrides}


def applies_to(key: str) -> list[str]:
    """The methods whose recipe has `key`."""
    return [m for m in METHODS if key in RECIPES[m]]


def parse_training(
    raw: dict[str, Any] | None, fail: Callable[[tuple[str, ...], str], Exception]
) -> TrainingSpec | None:
    """Check the (schema-valid) `training:` mapping against its method; `fail(key_path, message)` makes the error."""
    if raw is None:
        return None
    method = raw.get("method", DEFAULT_METHOD)
    if "model" not in raw:
        raise fail(("training",), f"needs model: a Hub id or a local folder (for example {DEFAULT_MODEL})")
    overrides = {k: v for k, v in raw.items() if k not in ("method", "model")}
    recipe = RECIPES[method]
    for key in overrides:
        if key not in recipe:
            raise fail(
                ("training", key), f"does not apply to method '{method}' (it applies to {', '.join(applies_to(key))})"
            )
    settings = {**recipe, **overrides}
    if method in ("prefix", "ptuning") and settings["gradient_checkpointing"]:
        raise fail(
            ("training", "gradient_checkpointing"),
            "cannot be used with prefix methods: checkpointed layers drop the KV cache that carries the prefix",
        )
    if method == "prompt" and settings["prompt_tuning_init"] == "TEXT" and not settings["prompt_tuning_init_text"]:
        raise fail(("training", "prompt_tuning_init"), "TEXT needs prompt_tuning_init_text")
    return TrainingSpec(method=method, model=raw["model"], overrides=MappingProxyType(overrides))


def default_training(tokenizer_name: str) -> TrainingSpec:
    """The launcher's plan for a spec without `training:`: LoRA on a model that shares the spec's tokenizer."""
    model = DEFAULT_MODEL if tokenizer_name == "qwen3" else tokenizer_name
    return TrainingSpec(method=DEFAULT_METHOD, model=model, from_spec=False)
