#!/usr/bin/env bash
# Train on this dataset package (written by dsc). Counts the GPUs and picks how to run train.py:
#   no GPU or one GPU   one process:                    python train.py ...
#   several, full       FSDP2 through accelerate:       accelerate launch --config_file accelerate_fsdp.yaml ...
#   several, PEFT       one DDP process per GPU:        torchrun --nproc_per_node N ...
#   --backend deepspeed DeepSpeed ZeRO-3 instead:       torchrun ... train.py --deepspeed ds_zero3.json
#
#   ./launch.sh                                  # every visible GPU, the method and recipe in training.json
#   ./launch.sh --gpus 1 --learning_rate 1e-4    # any training.json key can be overridden: --key value
#   ./launch.sh --method qlora --model Qwen/Qwen3-8B
#   ./launch.sh --backend deepspeed              # ZeRO-3 (pip install deepspeed) instead of FSDP / DDP
#   ./launch.sh --dry-run                        # print the resolved command and configuration, run nothing
#
# The global batch (global_batch_size) is kept whatever the GPU count: gradient accumulation makes up the rest.
# PYTHON picks the interpreter (default: python3). One machine; for several, edit accelerate_fsdp.yaml
# (num_machines, machine_rank, main_process_ip) or pass torchrun's --nnodes/--rdzv options yourself.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
GPUS=""
BACKEND=""
DRY_RUN=0
ARGS=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) GPUS="${2:?--gpus needs a number}"; shift 2 ;;
    --gpus=*) GPUS="${1#*=}"; shift ;;
    --backend) BACKEND="${2:?--backend needs fsdp, ddp or deepspeed}"; shift 2 ;;
    --backend=*) BACKEND="${1#*=}"; shift ;;
    --dry-run|--dry_run) DRY_RUN=1; shift ;;
    -h|--help) usage; echo; "$PYTHON" "$HERE/train.py" --help; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if [[ -z "$GPUS" ]]; then
  # torch honours CUDA_VISIBLE_DEVICES, which nvidia-smi does not.
  GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
fi
if ! [[ "$GPUS" =~ ^[0-9]+$ ]]; then
  echo "launch.sh: --gpus must be a whole number, got '$GPUS'" >&2
  exit 2
fi
PROCS=$(( GPUS > 1 ? GPUS : 1 ))

# The method decides the default backend; train.py resolves it (training.json, then --method) and rejects bad keys.
METHOD="$("$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} --print method)"
if [[ -z "$BACKEND" ]]; then
  if (( GPUS <= 1 )); then BACKEND=single
  elif [[ "$METHOD" == full ]]; then BACKEND=fsdp
  else BACKEND=ddp
  fi
fi

CONFIG_FILE=""
case "$BACKEND" in
  single)
    CMD=("$PYTHON" "$HERE/train.py") ;;
  ddp)
    CMD=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$PROCS" "$HERE/train.py") ;;
  deepspeed)
    if (( ! DRY_RUN )) && ! "$PYTHON" -c 'import deepspeed' 2>/dev/null; then
      echo "launch.sh: --backend deepspeed needs DeepSpeed: pip install deepspeed" >&2
      exit 2
    fi
    CONFIG_FILE="$HERE/ds_zero3.json"
    CMD=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$PROCS" "$HERE/train.py" --deepspeed "$CONFIG_FILE") ;;
  fsdp)
    CONFIG_FILE="$HERE/accelerate_fsdp.yaml"
    CMD=("$PYTHON" -m accelerate.commands.launch --config_file "$CONFIG_FILE" --num_processes "$PROCS")
    # Wrap each decoder layer in its own FSDP unit: the class comes from the model (its _no_split_modules).
    if LAYERS="$("$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} --print layer_class 2>/dev/null)" && [[ -n "$LAYERS" ]]; then
      CMD+=(--fsdp_transformer_layer_cls_to_wrap "$LAYERS")
    else
      echo "launch.sh: could not read the model's decoder layer class; accelerate falls back to its _no_split_modules" >&2
    fi
    CMD+=("$HERE/train.py") ;;
  *)
    echo "launch.sh: --backend must be fsdp, ddp or deepspeed, got '$BACKEND'" >&2
    exit 2 ;;
esac
CMD+=(${ARGS[@]+"${ARGS[@]}"})

if (( DRY_RUN )); then
  echo "# GPUs: $GPUS; method: $METHOD; backend: $BACKEND; processes: $PROCS"
  echo "# command:"
  printf '%q ' "${CMD[@]}"
  echo
  if [[ -n "$CONFIG_FILE" ]]; then
    echo "# $(basename "$CONFIG_FILE"):"
    cat "$CONFIG_FILE"
  fi
  echo "# resolved configuration (per process):"
  exec "$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} --dry_run --world_size "$PROCS"
fi

exec "${CMD[@]}"
