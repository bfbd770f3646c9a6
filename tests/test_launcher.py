"""The launcher in every package: its files, launch.sh's plans (devices, processes, batch), and real CPU runs.

The launcher's files and plans are checked on a package built from alpaca.yaml with Qwen3's tokenizer (the default
model, the refusal of a model with another tokenizer). The runs use one package built from alpaca.yaml (6 training and
2 validation records, 160 tokens at most) with the session's tiny byte-level BPE tokenizer (conftest's tiny_tokenizer)
and a tiny random Llama saved with that tokenizer: real training steps whose output layer is 1k rows, not Qwen3's 151k
(test_chat_train.py and the README's TRL example train on Qwen3 packages). LoRA and full fine-tuning run through
launch.sh as a user would (LoRA killed after its first checkpoint and started again, full with --packing); the prefix
and prompt methods run the package's train.py in this process, which saves a Python start-up and its imports each.
Every run must lower the loss of its records, evaluate on the validation split, save what it trained, and that save
must load back, score the records lower than the untouched model does, and generate.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import FORMATS, REPO, dsc_cli, tiny_llama_config

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft (pip install -e .[train])")

LAUNCHER_FILES = ("train.py", "launch.sh", "accelerate_fsdp.yaml", "ds_zero3.json", "training.json")
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
"""One thread per training process: the models are tiny, and the tests share their cores with each other."""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    """A 2-layer, 16-wide random Llama with the tiny tokenizer's 1k vocabulary, saved with that tokenizer's files."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    config = tiny_llama_config(
        tokenizer,
        intermediate_size=64,
        num_key_value_heads=1,
        max_position_embeddings=256,
        initializer_range=0.5,  # wide enough that a few steps visibly move the loss of a 16-wide model
        tie_word_embeddings=True,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alpaca.yaml built small with Qwen3's tokenizer: 8 records of at most 64 tokens, default launcher (LoRA)."""
    import dsc

    out = tmp_path_factory.mktemp("pkg") / "alpaca"
    return dsc.build(FORMATS / "alpaca.yaml", output=out, limit=8, lengths={"max_length": 64}, split={"validation": 2}).path


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    """alpaca.yaml built small with the tiny tokenizer: 6 training and 2 validation records of at most 160 tokens."""
    import dsc

    out = tmp_path_factory.mktemp("tiny-pkg") / "alpaca"
    settings = {"lengths": {"max_length": 160}, "split": {"validation": 2}, "tokenizer": str(tiny_tokenizer)}
    package = dsc.build(FORMATS / "alpaca.yaml", output=out, limit=8, **settings)
    assert package.manifest["counts"]["kept"] == {"train": 6, "validation": 2}, package.manifest["counts"]
    return package.path


def _import_train_py(package: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, package / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_py(tiny_package: Path) -> ModuleType:
    """The trained package's own train.py, imported (it reads training.json and manifest.json beside it)."""
    return _import_train_py(tiny_package, "package_train")


@pytest.fixture(scope="module")
def qwen3_train_py(package: Path) -> ModuleType:
    """The Qwen3 package's own train.py, imported."""
    return _import_train_py(package, "qwen3_package_train")


def launch(pkg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the package's launch.sh the way a user would, with this interpreter and no network."""
    return subprocess.run(
        ["bash", str(pkg / "launch.sh"), *args],
        cwd=pkg,
        env={**os.environ, **ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def dry_run(pkg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, str], str, dict[str, Any]]:
    """launch.sh's plan (the '# key: value' lines), the command line it would run, and train.py's configuration."""
    result = launch(pkg, "--dry-run", *args, env=env)
    assert result.returncode == 0, result.stderr
    head, _, resolved = result.stdout.partition("# resolved configuration (per process):\n")
    lines = head.split("# command:\n", 1)
    plan = dict(line[2:].split(": ", 1) for line in lines[0].splitlines())
    return plan, lines[1].splitlines()[0], json.loads(resolved)


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
    """A GPU image holds torch, transformers, accelerate, peft and pyarrow, not datasets or dsc: that must suffice
    (huggingface_hub comes with transformers, which requires it)."""
    allowed = {"torch", "transformers", "huggingface_hub", "peft", "accelerate", "pyarrow"}
    tree = ast.parse((package / "train.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} <= allowed
    assert "dsc" not in imported and "datasets" not in imported


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
    env = {"DSC_GPU_COUNT": "8"}
    plan, command, resolved = dry_run(package, "--gpus", "8", "--method", "full", "--model", str(tiny_model), env=env)
    assert plan["devices"] == "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7" and plan["backend"] == "fsdp"
    # Alpaca: global batch 128 = 8 GPUs x 4 per device x 4 accumulation steps.
    assert plan["batch"] == "4 per device x 8 processes x 4 accumulation steps = global batch 128"
    assert "-m accelerate.commands.launch --config_file" in command and "accelerate_fsdp.yaml" in command
    assert "--num_processes 8 --fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer" in command
    assert (resolved["world_size"], resolved["gradient_accumulation_steps"], resolved["effective_batch_size"]) == (8, 4, 128)
    assert (resolved["learning_rate"], resolved["lr_scheduler_type"], resolved["warmup_ratio"]) == (2e-5, "cosine", 0.03)


def test_a_model_out_of_reach_plans_without_its_layer_class(package: Path, tmp_path: Path) -> None:
    """A Hub model that is neither cached nor reachable (offline): the FSDP plan says so and leaves the layer class to
    accelerate, and train.py gives up on it before importing the training stack."""
    env = {"DSC_GPU_COUNT": "8", "HF_HOME": str(tmp_path / "empty-cache")}
    result = launch(package, "--dry-run", "--gpus", "8", "--method", "full", "--model", "Qwen/Qwen3-0.6B", env=env)
    assert result.returncode == 0 and "could not read the model's decoder layer class" in result.stderr, result.stderr
    command = result.stdout.split("# command:\n", 1)[1].splitlines()[0]
    assert "--num_processes 8 " in command and "--fsdp_transformer_layer_cls_to_wrap" not in command
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['train.py', '--method', 'full', '--model', 'Qwen/Qwen3-0.6B', '--print', 'layer_class']\n"
        "try:\n"
        f"    runpy.run_path({str(package / 'train.py')!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    print(stop.code)\n"
        "print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    asked = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **ENV, **env}, capture_output=True, text=True, timeout=600)
    assert "train.py: cannot read Qwen/Qwen3-0.6B's config.json (LocalEntryNotFoundError)" in asked.stdout, asked
    assert asked.stdout.rstrip().endswith("imported: []"), asked.stdout


def test_one_gpu_is_pinned_on_a_host_with_several(package: Path, tiny_model: Path) -> None:
    """--gpus 1 where 4 GPUs are visible (DSC_GPU_COUNT stands in for them) runs one process that sees one GPU, so
    the Trainer cannot wrap the model in DataParallel; --gpus N takes the first N of CUDA_VISIBLE_DEVICES."""
    model = ("--model", str(tiny_model))
    plan, command, resolved = dry_run(package, "--gpus", "1", "--method", "ptuning", *model, env={"DSC_GPU_COUNT": "4"})
    assert (plan["GPUs"], plan["devices"], plan["processes"]) == ("1 of 4 visible", "CUDA_VISIBLE_DEVICES=0", "1")
    assert command.startswith("CUDA_VISIBLE_DEVICES=0 ") and command.split()[2].endswith("train.py")
    assert "torch.distributed" not in command and "accelerate" not in command
    assert plan["batch"] == "1 per device x 1 processes x 16 accumulation steps = global batch 16"  # ChatGLM's
    assert resolved["peft_config"]["class"] == "PrefixTuningConfig" and resolved["peft_config"]["num_virtual_tokens"] == 128
    assert resolved["gradient_checkpointing"] is False and resolved["max_steps"] == 3000

    plan, command, resolved = dry_run(package, "--gpus", "0", "--method", "full", *model, env={"DSC_GPU_COUNT": "4"})
    assert (plan["GPUs"], plan["devices"], plan["backend"]) == ("none (the CPU)", "CUDA_VISIBLE_DEVICES='' (the CPU)", "single")
    assert command.startswith("CUDA_VISIBLE_DEVICES='' ") and command.split()[2].endswith("train.py")  # what it execs

    env = {"DSC_GPU_COUNT": "3", "CUDA_VISIBLE_DEVICES": "3,5,7"}
    plan, command, resolved = dry_run(package, "--gpus", "2", "--method", "qlora", *model, "--learning_rate", "1e-4", env=env)
    assert plan["devices"] == "CUDA_VISIBLE_DEVICES=3,5" and plan["backend"] == "ddp"  # adapters: DDP via torchrun
    assert "-m torch.distributed.run --standalone --nproc_per_node 2" in command and resolved["learning_rate"] == 1e-4
    assert resolved["peft_config"]["target_modules"] == "all-linear"
    assert plan["batch"] == "4 per device x 2 processes x 2 accumulation steps = global batch 16"  # QLoRA's 16
    assert resolved["quantization"]["load_in_4bit"] is True and resolved["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert (resolved["peft_config"]["r"], resolved["peft_config"]["lora_alpha"]) == (64, 16)
    assert (resolved["optim"], resolved["warmup_ratio"], resolved["lr_scheduler_type"]) == ("paged_adamw_32bit", 0.03, "constant")


def test_a_dry_runs_adapter_config_is_what_peft_is_given(qwen3_train_py: ModuleType) -> None:
    """A dry run prints each method's peft arguments without importing peft (a plan in 0.1 s, not 5); a run builds
    its peft config from those same arguments, and peft keeps every one of them as given."""
    for method in qwen3_train_py.PEFT_METHODS:
        settings, _ = qwen3_train_py.resolve(["--method", method, "--world_size", "1"])
        name, arguments = qwen3_train_py.peft_arguments(settings)
        config = qwen3_train_py.peft_config(settings)
        assert type(config).__name__ == name and config.task_type == "CAUSAL_LM"
        assert {key: getattr(config, key) for key in arguments} == arguments, method


def test_dry_run_plans_deepspeed(package: Path, tiny_model: Path) -> None:
    env = {"DSC_GPU_COUNT": "4"}
    plan, command, resolved = dry_run(
        package, "--gpus", "4", "--backend", "deepspeed", "--method", "full", "--model", str(tiny_model), env=env
    )
    assert "--nproc_per_node 4" in command and "train.py --deepspeed" in command and "ds_zero3.json" in command
    assert plan["batch"] == "4 per device x 4 processes x 8 accumulation steps = global batch 128"
    # A plan can be made without DeepSpeed installed; it says what the run would lack.
    assert ("pip install deepspeed (--backend deepspeed)" in resolved["missing"]) == (importlib.util.find_spec("deepspeed") is None)


def test_an_interpreter_without_torch_plans_but_does_not_train(package: Path, tmp_path: Path) -> None:
    """launch.sh asks torch for the GPU count: where the interpreter has none, a dry run still plans (for the CPU, and
    says so) and a run stops with the reason and exit 2, not a traceback. A plan whose reader has gone ends quietly."""
    hidden = tmp_path / "no-torch"
    hidden.mkdir()
    (hidden / "torch.py").write_text("raise ImportError(\"No module named 'torch'\")\n", encoding="utf-8")
    no_torch = {"PYTHONPATH": str(hidden)}
    planned = launch(package, "--dry-run", env=no_torch)
    assert planned.returncode == 0 and "# GPUs: none (the CPU)" in planned.stdout, planned.stderr
    assert "has no torch to count the GPUs: planning with none visible" in planned.stderr
    refused = launch(package, "--max_steps", "1", env=no_torch)
    assert refused.returncode == 2 and "cannot import torch to count the GPUs" in refused.stderr
    assert "Traceback" not in planned.stderr + refused.stderr
    # The reader is gone before train.py (a Python start-up later) writes its plan.
    cut = subprocess.run(
        ["bash", "-c", f"{shlex.quote(sys.executable)} {package / 'train.py'} --dry_run | true"],
        env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60,
    )
    assert cut.returncode == 0 and "Traceback" not in cut.stderr, cut.stderr


def test_launcher_rejects_bad_settings_before_loading(package: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Mistakes and missing packages fail in a second, with the reason, before a process loads data or a model."""
    none = {"DSC_GPU_COUNT": "0"}  # this host's count, without the torch import that counts it (the third run counts)
    result = launch(package, "--dry-run", "--method", "prefix", "--lora_r", "8", env=none)
    assert result.returncode != 0
    assert "--lora_r does not apply to method 'prefix' (it applies to lora, qlora)" in result.stderr
    result = launch(package, "--dry-run", "--backend", "zero", "--gpus", "2", env=none)
    assert result.returncode == 2 and "--backend must be fsdp, ddp or deepspeed" in result.stderr
    result = launch(package, "--gpus", "2", "--max_steps", "1")
    assert result.returncode == 2 and "--gpus 2, but 0 GPU(s) are visible" in result.stderr

    model = ("--gpus", "0", "--model", str(tiny_model), "--output_dir", str(tmp_path / "out"))
    refusals = {
        ("--resume_from_checkpoint", str(tmp_path)): "not a complete checkpoint (its trainer_state.json is missing or cut short",
        ("--resume_from_checkpoint", "latest"): "--resume_from_checkpoint latest: no complete checkpoint-N folder in",
        ("--method", "prefix", "--packing"): "--packing works with full, lora, qlora: method 'prefix'",
    }
    if importlib.util.find_spec("bitsandbytes") is None:
        refusals[("--method", "qlora")] = "pip install bitsandbytes"
    for args, message in refusals.items():
        result = launch(package, *model, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and "Loading weights" not in result.stderr + result.stdout
    if importlib.util.find_spec("deepspeed") is None:
        result = launch(package, "--gpus", "2", "--backend", "deepspeed", "--method", "full", env={"DSC_GPU_COUNT": "2"})
        assert result.returncode == 2 and "pip install deepspeed" in result.stderr


def test_a_checkpoint_cut_short_while_saving_is_passed_over(train_py: ModuleType, tmp_path: Path) -> None:
    """Trainer writes trainer_state.json last but not atomically: a run killed while writing it leaves it empty or
    cut short. Resuming must take the newest checkpoint whose state reads whole, and refuse a named one that does not."""
    states = {"checkpoint-2": json.dumps({"global_step": 2}), "checkpoint-4": "", "checkpoint-6": '{"global_st'}
    for name, text in states.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(text)
    (tmp_path / "checkpoint-8").mkdir()  # killed before the state was begun
    assert train_py.last_checkpoint(str(tmp_path)) == tmp_path / "checkpoint-2"
    settings = {"output_dir": str(tmp_path), "resume_from_checkpoint": "auto"}
    assert train_py.resume_point(settings) == tmp_path / "checkpoint-2"
    for cut in ("checkpoint-4", "checkpoint-6", "checkpoint-8"):
        with pytest.raises(SystemExit, match="not a complete checkpoint"):
            train_py.resume_point({**settings, "resume_from_checkpoint": str(tmp_path / cut)})
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("[]")
    with pytest.raises(SystemExit, match="latest: no complete checkpoint-N folder"):
        train_py.resume_point({**settings, "resume_from_checkpoint": "latest"})


def test_model_with_another_tokenizer_is_refused(qwen3_train_py: ModuleType, tmp_path: Path) -> None:
    """A model whose tokenizer gives the package's EOS another id would train on garbage: train.py says so."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(["a tiny corpus of words"], trainers.BpeTrainer(special_tokens=["<unk>", "<|im_end|>"]))
    other = tmp_path / "other"
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>").save_pretrained(other)
    settings, _ = qwen3_train_py.resolve(["--model", str(other)])
    with pytest.raises(SystemExit) as refused:
        qwen3_train_py.load_tokenizer(settings)
    assert "the package was tokenized with 'qwen3'" in str(refused.value) and "rebuild the package" in str(refused.value)


# ---- real runs ----

SHORT = ["--per_device_train_batch_size", "6", "--global_batch_size", "6", "--logging_steps", "1", "--warmup_ratio", "0"]
SHORT += ["--lr_scheduler_type", "constant"]
"""Every step one pass over the 6 training records (so one epoch, and one evaluation, per step), every step logged,
at a constant rate (so each of the few steps counts)."""


def _rows(train_py: ModuleType, split: str) -> list[dict[str, list[int]]]:
    records = train_py.load_splits()[split]
    return [records[i] for i in range(len(records))]


def _loss(train_py: ModuleType, model: Any, rows: list[dict[str, list[int]]]) -> float:
    """The loss of the rows as one padded batch: token-weighted, as the Trainer's evaluation computes it."""
    with torch.no_grad():
        return model(**train_py.Collator(0)(rows)).loss.item()


def check_run(train_py: ModuleType, out: Path, tiny_model: Path, method: str, steps: int, evaluated: list[int]) -> dict[str, Any]:
    """The loss fell on the fixed records, the validation split was evaluated at the `evaluated` steps (each epoch's
    end and where max_steps stopped the run), and the save is what was trained: it loads, scores the training records
    lower than the untouched model, and generates."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    summary = json.loads((out / "train_summary.json").read_text())
    losses = [loss for _, loss in summary["losses"]]
    assert summary["steps"] == steps and [step for step, _ in summary["losses"]] == list(range(1, steps + 1))
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.05, losses  # the same 6 records every step: overfitting must lower the loss
    assert summary["tokens"] > 0 and summary["tokens_per_second"] > 0

    if method == "full":
        trained = AutoModelForCausalLM.from_pretrained(out)
    else:
        assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
        trained = AutoPeftModelForCausalLM.from_pretrained(out)
    train, validation = _rows(train_py, "train"), _rows(train_py, "validation")
    assert _loss(train_py, trained, train) < _loss(train_py, AutoModelForCausalLM.from_pretrained(tiny_model), train) - 0.05
    # One evaluation per epoch (here: per step) whatever stopped the run, on the validation split: the last one is
    # the saved model's loss on the validation records.
    assert [step for step, _ in summary["eval_losses"]] == evaluated
    assert summary["eval_losses"][-1][1] == pytest.approx(_loss(train_py, trained, validation), abs=1e-4)

    assert json.loads((out / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"  # saved beside it
    first = train[0]
    prompt = torch.tensor([first["input_ids"][: first["labels"].index(next(x for x in first["labels"] if x != -100))]])
    generated = trained.generate(input_ids=prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[-1] == prompt.shape[-1] + 4
    return summary


@pytest.fixture(scope="module")
def resumed_lora(
    tiny_package: Path, tiny_model: Path, train_py: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """LoRA through launch.sh --gpus 1 on a host that shows 4 GPUs, killed once its first checkpoint is on disk and
    started again with the same command: it must go on from that checkpoint. The second start runs, in this process,
    exactly the command launch.sh plans for it (its environment and train.py's arguments, from its dry run): the first
    one ran launch.sh end to end, and the second spares a Python start-up and the training stack's ~6 s of imports."""
    out = tmp_path_factory.mktemp("lora") / "out"
    args = ["--gpus", "1", "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "4", *SHORT]
    args += ["--save_steps", "2", "--learning_rate", "1e-2"]
    env = {**os.environ, **ENV, "DSC_GPU_COUNT": "4"}
    log = out.parent / "killed.log"
    with log.open("w") as sink:
        first = subprocess.Popen(
            ["bash", str(tiny_package / "launch.sh"), *args], cwd=tiny_package, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while train_py.checkpoint_state(out / "checkpoint-2") is None:  # its trainer_state.json written whole
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (out / "train_summary.json").exists()
    _, command, _ = dry_run(tiny_package, *args, env={"DSC_GPU_COUNT": "4"})
    words = shlex.split(command)
    settings = [word.split("=", 1) for word in words[: next(i for i, w in enumerate(words) if "=" not in w)]]
    assert words[len(settings) + 1] == str(tiny_package / "train.py"), command
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(log):
        for name, value in [*ENV.items(), *settings]:
            patch.setenv(name, value)
        patch.chdir(tiny_package)
        train_py.main(words[len(settings) + 2 :])
    return out, log.getvalue()


def test_lora_resumes_after_a_kill_and_trains_on_one_pinned_device(
    resumed_lora: tuple[Path, str], train_py: ModuleType, tiny_model: Path
) -> None:
    out, log = resumed_lora
    # Each step is an epoch; step 2's evaluation ran after its checkpoint was saved, in the run that was killed.
    summary = check_run(train_py, out, tiny_model, "lora", steps=4, evaluated=[1, 3, 4])
    assert summary["resumed_from"] == str(out / "checkpoint-2")  # the step count went on from 2: steps 1-4 logged
    assert f"train.py: resuming from {out / 'checkpoint-2'} (step 2)" in log
    assert summary["devices"] == "0" and summary["processes"] == 1  # --gpus 1 pinned the first of 4


def test_full_fine_tuning_with_packing(
    train_py: ModuleType, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process, as `launch.sh --gpus 0` execs it (CUDA_VISIBLE_DEVICES=''; the LoRA test above runs launch.sh
    itself end to end)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = tmp_path / "full"
    args = ["--method", "full", "--model", str(tiny_model), "--output_dir", str(out)]
    args += ["--max_steps", "5", *SHORT, "--per_device_train_batch_size", "3", "--global_batch_size", "3"]
    train_py.main([*args, "--save_steps", "100", "--learning_rate", "1e-3", "--packing"])
    stderr = capsys.readouterr().err
    # 3 records a step, 2 steps an epoch: evaluated at the end of each epoch and where max_steps stopped the third.
    summary = check_run(train_py, out, tiny_model, "full", steps=5, evaluated=[2, 4, 5])
    assert summary["packing"] is True and summary["devices"] == ""
    share = summary["padding_share_unpacked"]
    assert 0 < share < 1 and f"padding is {share:.1%} of the tokens in padded batches; 0.0% with --packing" in stderr


IN_PROCESS = {
    # method: overrides for a tiny random model (recipes' rates are for real models; prompt keeps its)
    "prefix": ["--learning_rate", "1e-1", "--num_virtual_tokens", "8", "--encoder_hidden_size", "32"],
    "ptuning": ["--learning_rate", "3e-1", "--num_virtual_tokens", "16"],
    "prompt": ["--num_virtual_tokens", "8"],
}


@pytest.mark.parametrize("method", list(IN_PROCESS))
def test_prefix_and_prompt_methods_train(method: str, train_py: ModuleType, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / method
    args = ["--method", method, "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "4", *SHORT]
    train_py.main([*args, "--save_steps", "100", *IN_PROCESS[method]])
    check_run(train_py, out, tiny_model, method, steps=4, evaluated=[1, 2, 3, 4])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_padded_loss(attention: str, train_py: ModuleType, tiny_model: Path) -> None:
    """The same records padded (attention_mask) and packed into one row (position_ids restarting per record): the
    same loss, and every record's logits in the packed row are its logits alone, so nothing attends across records."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=attention)
    model.config.use_cache = False  # as train.py sets it: transformers reads packing from position_ids without a cache
    rows = _rows(train_py, "train")
    padded, packed = train_py.Collator(0)(rows), train_py.PackingCollator()(rows)
    lengths = [len(row["input_ids"]) for row in rows]
    assert packed["input_ids"].shape == (1, sum(lengths)) and padded["input_ids"].numel() > sum(lengths)
    starts = [sum(lengths[:i]) for i in range(len(rows))]
    assert (packed["labels"][0, starts] == -100).all() and (packed["position_ids"][0, starts] == 0).all()
    with torch.no_grad():
        assert model(**packed).loss.item() == pytest.approx(model(**padded).loss.item(), abs=1e-5)
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        for row, start, n in zip(rows, starts, lengths, strict=True):
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            assert torch.allclose(logits[start : start + n], alone, atol=1e-4), start


def test_cli_build_writes_the_spec_s_training_plan(tmp_path: Path) -> None:
    spec = tmp_path / "adgen-ptuning.yaml"
    text = (FORMATS / "adgen.yaml").read_text().replace("path: data/", f"path: {FORMATS}/data/")
    spec.write_text(text + "training:\n  method: ptuning\n  model: THUDM/chatglm-6b\n  trust_remote_code: true\n")
    result = dsc_cli("build", str(spec), "--limit", "4", "-o", str(tmp_path / "pkg"))
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "pkg" / "training.json").read_text())
    assert (config["method"], config["model"], config["overrides"]) == (
        "ptuning",
        "THUDM/chatglm-6b",
        {"trust_remote_code": True},
    )
    assert "ChatGLM-6B P-Tuning v2" in (tmp_path / "pkg" / "README.md").read_text()


def test_train_py_reads_the_package_and_pads_exactly_like_dsc_collator(tiny_package: Path, train_py: ModuleType) -> None:
    """train.py must stay free of dsc and datasets, so it reads the Parquet itself and carries its own collator: both
    have to agree with `datasets.load_dataset` and `dsc.collator`."""
    import datasets

    import dsc

    package = tiny_package
    theirs_rows = [{k: r[k] for k in ("input_ids", "labels")} for r in datasets.load_dataset(str(package))["train"]]
    rows = _rows(train_py, "train")
    assert rows == theirs_rows
    pad_id = json.loads((package / "manifest.json").read_text())["tokenizer"]["pad_id"]
    for multiple in (1, 8):
        ours = train_py.Collator(pad_id, multiple)(rows)
        theirs = dsc.collator(pad_id, pad_to_multiple_of=multiple)(rows)
        assert set(ours) == set(theirs)
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    assert (ours["labels"] == -100).sum() > 0 and ours["input_ids"].shape[1] % 8 == 0
    lengths = [len(row["input_ids"]) for row in rows]
    padded = max(lengths) * len(lengths)
    assert train_py.padding_share(lengths, len(lengths), 1, seed=0) == pytest.approx(1 - sum(lengths) / padded)


def test_gpu_check_prepares_a_carried_package_and_plans_every_run(tmp_path: Path) -> None:
    """scripts/gpu_check.sh is run on a GPU machine without dsc; here: its CPU half, its dry run and its arguments."""
    script = REPO / "scripts" / "gpu_check.sh"
    # One GPU, as on the machine it is for (launch.sh's own count through torch is tested above, and costs an import).
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "LIMIT": "8", "DSC_GPU_COUNT": "1"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(script), *args], env={**env, **extra}, capture_output=True, text=True, timeout=600)

    unprepared = run("run", str(tmp_path / "nothing"))
    assert run().returncode == 2 and unprepared.returncode == 2 and "is not prepared" in unprepared.stderr
    prepared = run("prepare", str(tmp_path / "check"))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    for path in ("package/launch.sh", "package/train.py", "tokenizer/tokenizer.json", "model-config/config.json"):
        assert (tmp_path / "check" / path).is_file(), path
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tmp_path / "check" / "model-config").to_dict()  # what the GPU side builds from
    recorded = json.loads((tmp_path / "check" / "package" / "manifest.json").read_text())["tokenizer"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "check" / "tokenizer")
    assert config["model_type"] == "llama" and config["vocab_size"] == len(tokenizer) == recorded["vocab_size"]
    assert (config["eos_token_id"], config["pad_token_id"]) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    embedding = config["vocab_size"] * config["hidden_size"]
    per_layer = 4 * config["hidden_size"] ** 2 * 3 // 4 + 3 * config["hidden_size"] * config["intermediate_size"]
    assert 100e6 < embedding + config["num_hidden_layers"] * per_layer < 500e6  # a ~100-500M-parameter model

    planned = run("run", str(tmp_path / "check"), "--dry-run")
    assert planned.returncode == 0, planned.stderr[-3000:]
    runs = [line.split(":", 1)[0][3:] for line in planned.stdout.splitlines() if line.startswith("== ") and "launch.sh" in line]
    expected = ["full", "full+packing", "lora", "lora+packing", "ptuning", "prefix"]
    expected += [m for m in ("qlora", "qlora+packing") if importlib.util.find_spec("bitsandbytes")]
    expected += ["deepspeed"] if importlib.util.find_spec("deepspeed") else []
    assert sorted(runs) == sorted(expected)
    assert "# GPUs: 1 of 1 visible\n# devices: CUDA_VISIBLE_DEVICES=0\n" in planned.stdout and "train.py --model" in planned.stdout
    assert "--packing" in planned.stdout and not (tmp_path / "check" / "model" / "model.safetensors").exists()
    assert run("run", str(tmp_path / "check"), "--dry-run", METHODS="full,dora").returncode == 2
