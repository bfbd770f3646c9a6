#!/usr/bin/env bash
# GPU check of the package launcher, in two halves, for a GPU machine that has no network and no dsc: an image with
# torch, transformers, huggingface_hub, accelerate, peft, pyarrow and tokenizers, but no datasets, jsonschema,
# datasketch, trl, bitsandbytes or deepspeed.
#
#   scripts/gpu_check.sh prepare DIR          # here, with dsc installed: everything the GPU side needs, into DIR
#   scripts/gpu_check.sh run DIR              # there: train, check and time every method (about 5-8 minutes)
#   scripts/gpu_check.sh run DIR --dry-run    # no GPU needed: the model config, the plan and every command
#
# prepare builds formats/alpaca.yaml into DIR/package (its launcher included), saves the Qwen3 tokenizer the package
# was built with into DIR/tokenizer and a ~300M-parameter Llama config into DIR/model-config (about 20 MB in all).
# Wheels put into DIR/wheels (bitsandbytes for QLoRA, deepspeed; `pip download --only-binary :all: -d DIR/wheels
# bitsandbytes`) are installed by run with pip --no-index.
#
# run makes a random-initialized model from the config (seed 0) and, on one GPU through the package's launch.sh, runs
# full fine-tuning (bf16), LoRA, P-Tuning v2 and prefix tuning, and QLoRA and DeepSpeed ZeRO-3 (full) when their
# packages import; full, LoRA and QLoRA also with --packing. Each run is STEPS optimizer steps over the alpaca records;
# its loss must be finite and fall (the mean of the last 5 steps below the first), and what it saved must load and
# generate. It ends with tokens/s (non-padding tokens), peak GPU memory and the loss of every run, and exits 1 if any
# failed. Settings: STEPS (30), PER_GPU_BATCH (8), METHODS (full,lora,ptuning,prefix,qlora,deepspeed), LIMIT
# (prepare: the first N alpaca records, default all 1000), PYTHON (python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-30}"
PER_GPU_BATCH="${PER_GPU_BATCH:-8}"
METHODS="${METHODS:-full,lora,ptuning,prefix,qlora,deepspeed}"
export PYTHON HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
fail() { echo "gpu_check: $*" >&2; exit 2; }

STAGE="${1:-}"
DIR="${2:-}"
DRY_RUN=0
[[ "${3:-}" == --dry-run ]] && DRY_RUN=1
if [[ "$STAGE" == -h || "$STAGE" == --help ]]; then usage; exit 0; fi
[[ ( "$STAGE" == prepare || "$STAGE" == run ) && -n "$DIR" && $# -le 3 && ( $# -lt 3 || $DRY_RUN == 1 ) ]] \
  || { usage >&2; fail "usage: gpu_check.sh prepare DIR | gpu_check.sh run DIR [--dry-run]"; }
[[ "$STEPS" =~ ^[1-9][0-9]*$ && "$PER_GPU_BATCH" =~ ^[1-9][0-9]*$ ]] || fail "STEPS and PER_GPU_BATCH must be positive whole numbers"

if [[ "$STAGE" == prepare ]]; then
  mkdir -p "$DIR"
  echo "== build alpaca.yaml -> $DIR/package"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m dsc build "$REPO/formats/alpaca.yaml" -o "$DIR/package" -q \
    ${LIMIT:+--limit "$LIMIT"}
  echo "== Qwen3 tokenizer -> $DIR/tokenizer; Llama config -> $DIR/model-config"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$DIR" <<'EOF'
import json
import shutil
import sys
from pathlib import Path

from dsc.compiler.tokenizer import qwen3_path

out = Path(sys.argv[1])
recorded = json.loads((out / "package" / "manifest.json").read_text(encoding="utf-8"))["tokenizer"]
(out / "tokenizer").mkdir(exist_ok=True)
for name in ("tokenizer.json", "tokenizer_config.json"):  # what AutoTokenizer reads, the chat template included
    shutil.copy(qwen3_path() / name, out / "tokenizer" / name)
# About 300M parameters, 156M of them the tied 151,669 x 1024 embedding (Qwen3's vocabulary, as the package's manifest
# records it). Written as the JSON LlamaConfig reads, every key it does not find at its default: importing LlamaConfig
# imports torch, 4 s of this step.
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": recorded["vocab_size"],
    "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 12, "num_attention_heads": 16,
    "num_key_value_heads": 8, "max_position_embeddings": 4096, "tie_word_embeddings": True, "bos_token_id": None,
    "eos_token_id": recorded["eos_id"], "pad_token_id": recorded["pad_id"],
}
(out / "model-config").mkdir(exist_ok=True)
(out / "model-config" / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
EOF
  mkdir -p "$DIR/wheels"
  du -sh "$DIR"
  echo "gpu_check: prepared $DIR; on the GPU machine: scripts/gpu_check.sh run $DIR"
  exit 0
fi

# ---- run ----
PACKAGE="$DIR/package"
[[ -x "$PACKAGE/launch.sh" && -f "$DIR/tokenizer/tokenizer_config.json" && -f "$DIR/model-config/config.json" ]] \
  || fail "$DIR is not prepared: run scripts/gpu_check.sh prepare $DIR where dsc is installed"
MODEL="$DIR/model"
OUT="$DIR/out"

if (( ! DRY_RUN )); then
  GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
  (( GPUS >= 1 )) || fail "no CUDA GPU visible; this check needs one (or use --dry-run)"
  if compgen -G "$DIR/wheels/*.whl" > /dev/null; then
    echo "== install the carried wheels: $(cd "$DIR/wheels" && echo *.whl)"
    "$PYTHON" -m pip install --quiet --no-index --find-links "$DIR/wheels" "$DIR"/wheels/*.whl
  fi
fi

echo "== random-initialized model -> $MODEL"
mkdir -p "$MODEL"
cp "$DIR"/tokenizer/* "$DIR/model-config/config.json" "$MODEL/"   # a dry run's plan needs no more than these
(( DRY_RUN )) || "$PYTHON" - "$MODEL" <<'EOF'
import sys

import torch
from transformers import AutoConfig, LlamaForCausalLM

model = sys.argv[1]
config = AutoConfig.from_pretrained(model)
torch.manual_seed(0)
with torch.device("cuda"):
    net = LlamaForCausalLM(config)
net.save_pretrained(model)
print(f"{sum(p.numel() for p in net.parameters()) / 1e6:.0f}M parameters; {torch.cuda.get_device_name(0)}")
EOF

# method: extra launch.sh flags (a random model's rates: higher than the recipes' for pretrained ones).
declare -A FLAGS=(
  [full]="--method full --learning_rate 5e-4"
  [lora]="--method lora --learning_rate 2e-3"
  [ptuning]="--method ptuning --learning_rate 2e-2"
  [prefix]="--method prefix --learning_rate 1e-2"
  [qlora]="--method qlora --learning_rate 2e-3"
  [deepspeed]="--method full --learning_rate 5e-4 --backend deepspeed"
)
declare -A NEEDS=([qlora]=bitsandbytes [deepspeed]=deepspeed)
COMMON=(--gpus 1 --model "$MODEL" --max_steps "$STEPS" --per_device_train_batch_size "$PER_GPU_BATCH"
        --global_batch_size "$PER_GPU_BATCH" --logging_steps 1 --save_steps 1000000 --eval_strategy no --bf16 true
        --warmup_ratio 0.1 --lr_scheduler_type constant --resume_from_checkpoint no)

RUNS=()
IFS=, read -r -a WANTED <<< "$METHODS"
for method in "${WANTED[@]}"; do
  [[ -n "${FLAGS[$method]:-}" ]] || fail "METHODS: unknown method '$method' (full, lora, ptuning, prefix, qlora, deepspeed)"
  if [[ -n "${NEEDS[$method]:-}" ]] && ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${NEEDS[$method]}') is None)"; then
    echo "== $method: skipped, ${NEEDS[$method]} is not installed (carry its wheel in $DIR/wheels)"
    continue
  fi
  RUNS+=("$method")
  [[ "$method" == full || "$method" == lora || "$method" == qlora ]] && RUNS+=("$method+packing")
done

FAILED=()
for run in "${RUNS[@]}"; do
  method="${run%+packing}"
  read -r -a extra <<< "${FLAGS[$method]}"
  [[ "$run" == *+packing ]] && extra+=(--packing)
  args=("${COMMON[@]}" --output_dir "$OUT/$run" "${extra[@]}")
  echo "== $run: launch.sh ${args[*]}"
  if (( DRY_RUN )); then
    if [[ "$run" == "${RUNS[0]}" ]]; then
      plan="$("$PACKAGE/launch.sh" --dry-run "${args[@]}")"
      echo "${plan%%# resolved configuration*}"
    fi
    continue
  fi
  started=$SECONDS
  if ! "$PACKAGE/launch.sh" "${args[@]}" > "$OUT.$run.log" 2>&1; then
    tail -n 30 "$OUT.$run.log" >&2
    FAILED+=("$run")
  fi
  echo "   $(( SECONDS - started )) s; log: $OUT.$run.log"
done
(( DRY_RUN )) && { echo "gpu_check: dry run, ${#RUNS[@]} runs planned"; exit 0; }

echo "== result: every saved model loads and generates; loss must fall"
"$PYTHON" - "$OUT" "$MODEL" "${RUNS[@]}" <<'EOF'
import json
import math
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

out, base, runs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
tokenizer = AutoTokenizer.from_pretrained(base)
prompt = tokenizer("Give three tips for staying healthy.", return_tensors="pt").to("cuda")
failures = []
print(f"{'run':<16} {'steps':>5} {'tokens/s':>10} {'peak GiB':>9}  loss first -> last 5")
for run in runs:
    folder = out / run
    try:
        summary = json.loads((folder / "train_summary.json").read_text())
    except FileNotFoundError:
        failures.append(f"{run}: no train_summary.json (the run failed)")
        continue
    losses = [loss for _, loss in summary["losses"]]
    first, last = losses[0], sum(losses[-5:]) / len(losses[-5:])
    print(f"{run:<16} {summary['steps']:>5} {summary['tokens_per_second']:>10} {summary['peak_gpu_memory_gib']:>9}  "
          f"{first:.3f} -> {last:.3f}")
    if not all(math.isfinite(x) for x in losses) or not last < first:
        failures.append(f"{run}: loss {first:.3f} -> {last:.3f}")
    try:
        if (folder / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda")
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda")
        generated = model.generate(**prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert generated.shape[-1] == prompt["input_ids"].shape[-1] + 8
        del model
    except Exception as error:  # every run is reported, not just the first that fails
        failures.append(f"{run}: saved model does not load or generate: {error!r}")
speed = {run: json.loads((out / run / "train_summary.json").read_text())["tokens_per_second"]
         for run in runs if (out / run / "train_summary.json").is_file()}
for run in runs:
    if run.endswith("+packing") and run in speed and run.removesuffix("+packing") in speed:
        print(f"--packing: {run.removesuffix('+packing')} {speed[run.removesuffix('+packing')]} -> {speed[run]} tokens/s")
if failures:
    sys.exit("gpu_check: FAILED\n  " + "\n  ".join(failures))
print(f"gpu_check: ok, {len(runs)} runs")
EOF
if (( ${#FAILED[@]} )); then
  echo "gpu_check: FAILED runs: ${FAILED[*]}" >&2
  exit 1
fi
