"""The launcher in every package: its files, launch.sh's plans for 1 and 8 GPUs, and real CPU runs of every method.

The runs use a package built from alpaca.yaml (8 records, 64 tokens at most) and a tiny random Llama saved with the
Qwen3 tokenizer the package was built with; each overfits the 6 training records and must lower their loss, save a
model or adapter, and that save must load back, score the records lower than the untouched model does, and generate.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FORMATS, run_dsc, tiny_llama_config

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

LAUNCHER_FILES = ("train.py", "launch.sh", "accelerate_fsdp.yaml", "ds_zero3.json", "training.json")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 16-wide random Llama with the Qwen3 vocabulary, saved with the Qwen3 tokenizer files."""
    from dsc.compiler.tokenizer import qwen3_path
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(qwen3_path()))
    config = tiny_llama_config(
        tokenizer,
        intermediate_size=64,
        num_key_value_heads=1,
        max_position_embeddings=256,
        initializer_range=0.5,  # wide enough that 8 steps visibly move the loss of a 16-wide model
        tie_word_embeddings=True,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alpaca.yaml built small: 6 training and 2 validation records of at most 64 tokens, default launcher (LoRA)."""
    import dsc

    out = tmp_path_factory.mktemp("pkg") / "alpaca"
    return dsc.build(
        FORMATS / "alpaca.yaml", output=out, limit=8, lengths={"max_length": 64}, split={"validation": 2}
    ).path


def launch(pkg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the package's launch.sh the way a user would, with this interpreter and no network."""
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        ["bash", str(pkg / "launch.sh"), *args], cwd=pkg, env=env, capture_output=True, text=True, timeout=600
    )


def dry_run(pkg: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """The command line launch.sh would run, and the configuration train.py resolved."""
    result = launch(pkg, "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    head, _, resolved = result.stdout.partition("# resolved configuration (per process):\n")
    command = head.split("# command:\n", 1)[1].splitlines()[0]
    return command, json.loads(resolved)


def test_every_package_carries_the_launcher(package: Path) -> None:
    for name in LAUNCHER_FILES:
        assert (package / name).is_file(), name
    assert os.access(package / "launch.sh", os.X_OK)
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["launcher"]["method"] == "lora" and manifest["launcher"]["from_spec"] is False
    assert sorted(manifest["launcher"]["files"]) == sorted(LAUNCHER_FILES)
    card = (package / "README.md").read_text()
    assert "## Train on it" in card and "./launch.sh --dry-run" in card
    config = json.loads((package / "training.json").read_text())
    assert (config["method"], config["model"]) == ("lora", "Qwen/Qwen3-0.6B")


def test_train_py_imports_nothing_but_the_training_stack(package: Path) -> None:
    allowed = {"torch", "transformers", "datasets", "peft", "accelerate"}
    tree = ast.parse((package / "train.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} <= allowed
    assert "dsc" not in imported and "compiler" not in imported


def test_fsdp_config_is_real_fsdp2_for_accelerate(package: Path) -> None:
    """accelerate itself reads accelerate_fsdp.yaml plus launch.sh's flags into an FSDP2 plugin (a misspelled key
    would be silently dropped and fail here)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    argv = ["--config_file", str(package / "accelerate_fsdp.yaml"), "--num_processes", "8"]
    argv += ["--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer", str(package / "train.py")]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    env = {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_"))}
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        plugin = FullyShardedDataParallelPlugin()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert plugin.fsdp_version == 2
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.activation_checkpointing and plugin.cpu_ram_efficient_loading and plugin.reshard_after_forward
    assert yaml.safe_load((package / "accelerate_fsdp.yaml").read_text())["fsdp_config"]["fsdp_version"] == 2
    ds = json.loads((package / "ds_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["gradient_accumulation_steps"] == "auto"


def test_dry_run_for_eight_gpus_full_fine_tuning(package: Path, tiny_model: Path) -> None:
    command, resolved = dry_run(package, "--gpus", "8", "--method", "full", "--model", str(tiny_model))
    assert "-m accelerate.commands.launch --config_file" in command and "accelerate_fsdp.yaml" in command
    assert "--num_processes 8 --fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer" in command
    # Alpaca: global batch 128 = 8 GPUs x 4 per device x 4 accumulation steps.
    assert (resolved["world_size"], resolved["gradient_accumulation_steps"], resolved["effective_batch_size"]) == (
        8,
        4,
        128,
    )
    assert (resolved["learning_rate"], resolved["lr_scheduler_type"], resolved["warmup_ratio"]) == (
        2e-5,
        "cosine",
        0.03,
    )


def test_dry_run_plans_ddp_deepspeed_and_one_process(package: Path, tiny_model: Path) -> None:
    model = ("--model", str(tiny_model))
    command, resolved = dry_run(package, "--gpus", "8", *model, "--learning_rate", "1e-4")
    assert "-m torch.distributed.run --standalone --nproc_per_node 8" in command  # LoRA: DDP
    assert resolved["learning_rate"] == 1e-4 and resolved["gradient_accumulation_steps"] == 4
    assert resolved["peft_config"]["target_modules"] == "all-linear" and resolved["peft_config"]["r"] == 16
    command, _ = dry_run(package, "--gpus", "4", "--backend", "deepspeed", "--method", "full", *model)
    assert "--nproc_per_node 4" in command and "train.py --deepspeed" in command and "ds_zero3.json" in command
    command, resolved = dry_run(package, "--gpus", "1", "--method", "ptuning", *model)
    assert (
        "torch.distributed" not in command and "accelerate" not in command and command.split()[1].endswith("train.py")
    )
    assert (
        resolved["peft_config"]["peft_type"] == "PREFIX_TUNING" and resolved["peft_config"]["num_virtual_tokens"] == 128
    )
    assert resolved["gradient_accumulation_steps"] == 16 and resolved["gradient_checkpointing"] is False


def test_qlora_plan_is_written_and_checked(package: Path, tiny_model: Path) -> None:
    command, resolved = dry_run(package, "--gpus", "2", "--method", "qlora", "--model", str(tiny_model))
    assert "--nproc_per_node 2" in command
    assert (
        resolved["quantization"]["load_in_4bit"] == "True" and resolved["quantization"]["bnb_4bit_quant_type"] == "nf4"
    )
    assert (resolved["peft_config"]["r"], resolved["peft_config"]["lora_alpha"]) == (64, 16)
    assert resolved["optim"] == "paged_adamw_32bit" and resolved["gradient_accumulation_steps"] == 8


def test_launcher_rejects_settings_of_another_method(package: Path) -> None:
    result = launch(package, "--dry-run", "--method", "prefix", "--lora_r", "8")
    assert result.returncode != 0
    assert "--lora_r does not apply to method 'prefix' (it applies to lora, qlora)" in result.stderr
    result = launch(package, "--dry-run", "--backend", "zero", "--gpus", "2")
    assert result.returncode == 2 and "--backend must be fsdp, ddp or deepspeed" in result.stderr


def test_model_with_another_tokenizer_is_refused(package: Path, tiny_model: Path, tmp_path: Path) -> None:
    """A model whose tokenizer gives the package's EOS another id would train on garbage: train.py says so."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(["a tiny corpus of words"], trainers.BpeTrainer(special_tokens=["<unk>", "<|im_end|>"]))
    other = tmp_path / "other"
    for name in ("config.json", "model.safetensors"):
        other.mkdir(exist_ok=True)
        (other / name).write_bytes((tiny_model / name).read_bytes())
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>").save_pretrained(other)
    result = launch(package, "--gpus", "0", "--model", str(other), "--max_steps", "1")
    assert result.returncode != 0
    assert "the package was tokenized with 'qwen3'" in result.stderr and "rebuild the package" in result.stderr


METHOD_RUNS = {
    # method: overrides for a tiny random model (recipes' rates are for real models; ptuning and prompt keep theirs)
    "full": ["--learning_rate", "1e-3"],
    "lora": ["--learning_rate", "1e-2", "--eval_strategy", "steps", "--eval_steps", "4"],
    "prefix": ["--learning_rate", "3e-2", "--num_virtual_tokens", "8", "--encoder_hidden_size", "32"],
    "ptuning": ["--learning_rate", "5e-2", "--num_virtual_tokens", "16"],
    "prompt": ["--num_virtual_tokens", "8"],
}


def _mean_loss(model: Any, rows: list[dict[str, list[int]]]) -> float:
    with torch.no_grad():
        losses = [
            model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss.item()
            for r in rows
        ]
    return sum(losses) / len(losses)


def short_run(max_steps: int) -> list[str]:
    """Launcher flags for a few steps over the package's 6 training records, every step logged."""
    return ["--max_steps", str(max_steps), "--per_device_train_batch_size", "6", "--global_batch_size", "6", "--logging_steps", "1"]


@pytest.mark.parametrize("method", list(METHOD_RUNS))
def test_launcher_trains_every_method_on_cpu(method: str, package: Path, tiny_model: Path, tmp_path: Path) -> None:
    import datasets
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / method
    steps = short_run(8)
    args = ["--gpus", "0", "--method", method, "--model", str(tiny_model), "--output_dir", str(out), *steps]
    result = launch(package, *args, "--save_steps", "100", *METHOD_RUNS[method])
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((out / "train_summary.json").read_text())
    losses = [loss for _, loss in summary["losses"]]
    assert summary["steps"] == 8 and len(losses) == 8
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.05, losses  # the same 6 records every step: overfitting must lower the loss
    assert summary["tokens"] > 0 and summary["tokens_per_second"] > 0

    rows = list(datasets.load_dataset("parquet", data_files=str(package / "data/train-*.parquet"), split="train"))
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    if method == "full":
        trained = AutoModelForCausalLM.from_pretrained(out)
    else:
        assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
        trained = AutoPeftModelForCausalLM.from_pretrained(out)
    assert _mean_loss(trained, rows) < _mean_loss(base, rows) - 0.05  # what was saved is what was trained

    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer(rows[0]["prompt"], return_tensors="pt")
    generated = trained.generate(**prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[-1] == prompt["input_ids"].shape[-1] + 4


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
    reason="QLoRA loads the model in 4 bits with bitsandbytes, which needs a CUDA GPU",
)
def test_qlora_trains_on_a_gpu(package: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "qlora"
    steps = short_run(4)
    result = launch(
        package, "--gpus", "1", "--method", "qlora", "--model", str(tiny_model), "--output_dir", str(out), *steps
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert all(math.isfinite(loss) for _, loss in summary["losses"]) and (out / "adapter_config.json").is_file()


def test_cli_build_writes_the_spec_s_training_plan(tmp_path: Path) -> None:
    spec = tmp_path / "adgen-ptuning.yaml"
    text = (FORMATS / "adgen.yaml").read_text().replace("path: data/", f"path: {FORMATS}/data/")
    spec.write_text(text + "training:\n  method: ptuning\n  model: THUDM/chatglm-6b\n  trust_remote_code: true\n")
    result = run_dsc("build", str(spec), "--limit", "4", "-o", str(tmp_path / "pkg"))
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "pkg" / "training.json").read_text())
    assert (config["method"], config["model"], config["overrides"]) == (
        "ptuning",
        "THUDM/chatglm-6b",
        {"trust_remote_code": True},
    )
    assert "ChatGLM-6B P-Tuning v2" in (tmp_path / "pkg" / "README.md").read_text()


def test_train_py_collator_pads_exactly_like_dsc_collator(package: Path) -> None:
    """train.py must stay free of dsc, so it carries its own collator: it has to agree with `dsc.collator`."""
    import datasets

    import dsc

    spec = importlib.util.spec_from_file_location("package_train", package / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    rows = [{k: r[k] for k in ("input_ids", "labels")} for r in datasets.load_dataset(str(package))["train"]]
    pad_id = json.loads((package / "manifest.json").read_text())["tokenizer"]["pad_id"]
    for multiple in (1, 8):
        ours = train.Collator(pad_id, multiple)(rows)
        theirs = dsc.collator(pad_id, pad_to_multiple_of=multiple)(rows)
        assert set(ours) == set(theirs)
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    assert (ours["labels"] == -100).sum() > 0 and ours["input_ids"].shape[1] % 8 == 0
