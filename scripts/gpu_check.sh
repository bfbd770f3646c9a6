#!/usr/bin/env bash
# GPU check of the package launcher (a few minutes on one or more CUDA GPUs; no network needed):
#   1. build formats/alpaca.yaml into a package,
#   2. make a small random-initialized Llama (about 100M parameters, Qwen3 vocabulary) and save it locally,
#   3. run the package's launch.sh: full fine-tuning with FSDP2 across every visible GPU, bf16, a fixed number of steps,
#   4. print tokens/s, peak GPU memory and the loss curve; fail unless every loss is finite and the loss fell.
#
#   scripts/gpu_check.sh                 # from the repository root, with dsc and the train extra installed
#   STEPS=60 WORK=/tmp/check scripts/gpu_check.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-40}"
PER_GPU_BATCH="${PER_GPU_BATCH:-8}"
WORK="${WORK:-$(mktemp -d -t dsc-gpu-check-XXXXXX)}"
export PYTHON HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
if (( GPUS < 1 )); then
  echo "gpu_check: no CUDA GPU visible; this check needs one" >&2
  exit 2
fi
"$PYTHON" - <<'EOF'
import torch
for i in range(torch.cuda.device_count()):
    print(f"gpu {i}: {torch.cuda.get_device_name(i)}, bf16 {torch.cuda.is_bf16_supported()}")
EOF

echo "== build alpaca.yaml -> $WORK/alpaca"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m dsc build "$REPO/formats/alpaca.yaml" -o "$WORK/alpaca" -q

echo "== random-initialized Llama -> $WORK/model"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$WORK/model" <<'EOF'
import sys

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from dsc.compiler.tokenizer import qwen3_path

tokenizer = AutoTokenizer.from_pretrained(str(qwen3_path()))
config = LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024, tie_word_embeddings=True,
    bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
)
torch.manual_seed(0)
model = LlamaForCausalLM(config)
model.save_pretrained(sys.argv[1])
tokenizer.save_pretrained(sys.argv[1])
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
EOF

echo "== train: full fine-tuning, FSDP2 over $GPUS GPU(s), bf16, $STEPS steps"
ARGS=(--backend fsdp --method full --model "$WORK/model" --output_dir "$WORK/out" --bf16 true
      --max_steps "$STEPS" --per_device_train_batch_size "$PER_GPU_BATCH" --global_batch_size $(( PER_GPU_BATCH * GPUS ))
      --learning_rate 1e-3 --warmup_ratio 0.1 --logging_steps 1 --save_steps 100000 --eval_strategy no)
"$WORK/alpaca/launch.sh" --dry-run "${ARGS[@]}" | sed -n '1,3p'
"$WORK/alpaca/launch.sh" "${ARGS[@]}"

echo "== result"
"$PYTHON" - "$WORK/out/train_summary.json" <<'EOF'
import json
import math
import sys

summary = json.load(open(sys.argv[1]))
losses = summary["losses"]
print(f"steps {summary['steps']}, {summary['tokens']} tokens (non-padding) in {summary['seconds']} s")
print(f"tokens/s (all GPUs): {summary['tokens_per_second']}")
print(f"peak GPU memory (rank 0): {summary['peak_gpu_memory_gib']} GiB")
print("loss curve: " + ", ".join(f"{step}:{loss:.3f}" for step, loss in losses))
if not all(math.isfinite(loss) for _, loss in losses):
    sys.exit("gpu_check: FAILED, a loss is not finite")
first, last = losses[0][1], sum(loss for _, loss in losses[-5:]) / len(losses[-5:])
if not last < first:
    sys.exit(f"gpu_check: FAILED, the loss did not fall ({first:.3f} -> {last:.3f})")
print(f"gpu_check: ok, loss {first:.3f} -> {last:.3f} (mean of the last 5 steps)")
EOF
