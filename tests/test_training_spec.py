"""The `training:` section: parsing over the method's recipe, the default without it, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FORMATS, dsc_cli
from dsc.compiler.errors import SpecError
from dsc.compiler.spec import load_spec, spec_schema
from dsc.compiler.training import DEFAULT_MODEL, RECIPES, default_training


def _spec_with(tmp_path: Path, training: str) -> Path:
    """alpaca.yaml (data path made absolute; its template is a built-in one) with a `training:` section appended."""
    text = (FORMATS / "alpaca.yaml").read_text(encoding="utf-8").replace("path: data/", f"path: {FORMATS}/data/")
    spec = tmp_path / "alpaca-train.yaml"
    spec.write_text(text + training, encoding="utf-8")
    return spec


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_training_section_overrides_the_method_recipe(tmp_path: Path) -> None:
    spec = load_spec(_spec_with(tmp_path, "training:\n  method: ptuning\n  model: THUDM/chatglm-6b\n  prefix_projection: true\n"))
    assert spec.training is not None
    assert (spec.training.method, spec.training.model) == ("ptuning", "THUDM/chatglm-6b")
    resolved = spec.training.resolved()
    assert resolved["prefix_projection"] is True  # the spec's key
    assert resolved["num_virtual_tokens"] == 128 and resolved["learning_rate"] == 2e-2  # ChatGLM's P-Tuning v2
    assert "lora_r" not in resolved


def test_recipes_follow_the_published_numbers() -> None:
    full = RECIPES["full"]
    assert (full["learning_rate"], full["num_train_epochs"], full["warmup_ratio"]) == (2e-5, 3.0, 0.03)
    assert (full["lr_scheduler_type"], full["weight_decay"], full["global_batch_size"]) == ("cosine", 0.0, 128)
    lora = RECIPES["lora"]  # tloen/alpaca-lora finetune.py, on every linear layer
    assert (lora["lora_r"], lora["lora_alpha"], lora["lora_dropout"], lora["learning_rate"]) == (8, 16, 0.05, 3e-4)
    assert (lora["lora_target_modules"], lora["lr_scheduler_type"], lora["global_batch_size"]) == ("all-linear", "linear", 128)
    qlora = RECIPES["qlora"]  # artidoro/qlora scripts/finetune_guanaco_7b.sh
    assert (qlora["lora_r"], qlora["lora_alpha"], qlora["lora_dropout"], qlora["bnb_4bit_quant_type"]) == (64, 16, 0.1, "nf4")
    assert (qlora["warmup_ratio"], qlora["lr_scheduler_type"], qlora["max_grad_norm"]) == (0.03, "constant", 0.3)
    assert (qlora["per_device_train_batch_size"], qlora["global_batch_size"]) == (4, 16)
    assert (RECIPES["ptuning"]["num_virtual_tokens"], RECIPES["ptuning"]["learning_rate"]) == (128, 2e-2)
    assert RECIPES["prompt"]["prompt_tuning_init"] == "SAMPLE_VOCAB"


def test_schema_and_recipes_name_the_same_keys() -> None:
    schema_keys = set(spec_schema()["properties"]["training"]["properties"]) - {"method", "model"}
    recipe_keys = {key for recipe in RECIPES.values() for key in recipe}
    assert schema_keys == recipe_keys
    assert set(spec_schema()["properties"]["training"]["properties"]["method"]["enum"]) == set(RECIPES)


def test_no_training_section_defaults_to_lora_on_a_model_sharing_the_tokenizer() -> None:
    spec = load_spec(FORMATS / "alpaca.yaml")
    assert spec.training is None
    default = default_training(spec.tokenizer.name)
    assert (default.method, default.model, default.from_spec) == ("lora", DEFAULT_MODEL, False)
    assert default_training("meta-llama/Llama-3.2-1B").model == "meta-llama/Llama-3.2-1B"


@pytest.mark.parametrize(
    ("training", "needle", "message"),
    [
        ("training:\n  method: prefix\n  model: m\n  lora_r: 8\n", "lora_r", "does not apply to method 'prefix'"),
        (
            "training:\n  method: ptuning\n  model: m\n  gradient_checkpointing: true\n",
            "gradient_checkpointing",
            "KV cache",
        ),
        (
            "training:\n  method: lora\n  model: m\n  learnig_rate: 1.0e-4\n",
            "learnig_rate",
            "did you mean 'learning_rate'",
        ),
        ("training:\n  method: dora\n  model: m\n", "method: dora", "'dora' is not one of"),
        ("training:\n  method: prompt\n  model: m\n  prompt_tuning_init: TEXT\n", "prompt_tuning_init", "needs"),
        ("training:\n  method: lora\n", "training:", "needs model"),
    ],
)
def test_training_mistakes_are_located(tmp_path: Path, training: str, needle: str, message: str) -> None:
    path = _spec_with(tmp_path, training)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    rendered = caught.value.render()
    assert message in rendered
    assert f"{path}:{_line_of(path, needle)}" in rendered


def test_cli_reports_a_training_mistake_without_a_traceback(tmp_path: Path) -> None:
    path = _spec_with(tmp_path, "training:\n  method: full\n  model: m\n  num_virtual_tokens: 8\n")
    result = dsc_cli("build", str(path), "--limit", "2", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}:{_line_of(path, 'num_virtual_tokens')}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
