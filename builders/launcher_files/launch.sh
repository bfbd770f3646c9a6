#!/usr/bin/env bash
# Train on this dataset package (written by dsc). One process per GPU, always; the GPUs used are pinned with
# CUDA_VISIBLE_DEVICES (the first N of those visible), and the run goes:
#   --gpus 0, or no GPU  one process on the CPU:           python train.py ...
#   --gpus 1             one process on one pinned GPU:    CUDA_VISIBLE_DEVICES=0 python train.py ...
#   --gpus N, full       FSDP2 through accelerate:         accelerate launch --config_file accelerate_fsdp.yaml ...
#   --gpus N, PEFT       one DDP process per GPU:          torchrun --nproc_per_node N ...
#   --backend deepspeed  DeepSpeed ZeRO-3 instead:         torchrun ... train.py --deepspeed ds_zero3.json
#
#   ./launch.sh                                  # every visible GPU, the method and recipe in training.json
#   ./launch.sh --gpus 1 --learning_rate 1e-4    # any training.json key can be overridden: --key value
#   ./launch.sh --method qlora --model Qwen/Qwen3-8B
#   ./launch.sh --packing                        # padding-free batches (full, lora, qlora)
#   ./launch.sh --resume_from_checkpoint latest  # go on from output_dir's newest checkpoint (a re-run does anyway)
#   ./launch.sh --backend deepspeed              # ZeRO-3 (pip install deepspeed) instead of FSDP / DDP
#   ./launch.sh --dry-run                        # print the devices, batch plan, command and configuration
#
# The global batch (global_batch_size) is kept whatever the GPU count: gradient accumulation makes up the rest.
# PYTHON picks the interpreter (default: python3). DSC_GPU_COUNT=N makes launch.sh take N GPUs as visible instead
# of asking torch (to plan for another machine, or in tests). One machine; for several, edit accelerate_fsdp.yaml
# (num_machines, machine_rank, main_process_ip) or pass torchrun's --nnodes/--rdzv options yourself.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
GPUS=""
BACKEND=""
DRY_RUN=0
ARGS=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
fail() { echo "launch.sh: $*" >&2; exit 2; }

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
[[ -z "$GPUS" || "$GPUS" =~ ^[0-9]+$ ]] || fail "--gpus must be a whole number, got '$GPUS'"

# The GPUs this process may use: torch honours CUDA_VISIBLE_DEVICES, which nvidia-smi does not.
VISIBLE_IDS=()
if [[ "$GPUS" != 0 ]]; then
  if [[ -n "${DSC_GPU_COUNT:-}" ]]; then
    [[ "$DSC_GPU_COUNT" =~ ^[0-9]+$ ]] || fail "DSC_GPU_COUNT must be a whole number, got '$DSC_GPU_COUNT'"
    VISIBLE="$DSC_GPU_COUNT"
  else
    if ! VISIBLE="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null)"; then
      (( DRY_RUN )) || fail "$PYTHON cannot import torch to count the GPUs: pip install torch, pick the interpreter with PYTHON=/path/to/python, or give the count with DSC_GPU_COUNT=N"
      echo "# $PYTHON has no torch to count the GPUs: planning with none visible (DSC_GPU_COUNT=N plans for N)" >&2
      VISIBLE=0
    fi
  fi
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    IFS=, read -r -a VISIBLE_IDS <<< "$CUDA_VISIBLE_DEVICES"
    VISIBLE_IDS=("${VISIBLE_IDS[@]:0:$VISIBLE}")
  else
    for (( i = 0; i < VISIBLE; i++ )); do VISIBLE_IDS+=("$i"); done
  fi
fi
VISIBLE=${#VISIBLE_IDS[@]}
GPUS="${GPUS:-$VISIBLE}"
if (( GPUS > VISIBLE )); then
  (( DRY_RUN )) || fail "--gpus $GPUS, but $VISIBLE GPU(s) are visible"
  echo "# a plan only: --gpus $GPUS, but $VISIBLE GPU(s) are visible here" >&2
  for (( i = VISIBLE; i < GPUS; i++ )); do VISIBLE_IDS+=("$i"); done
fi
DEVICES="$(IFS=,; echo "${VISIBLE_IDS[*]:0:$GPUS}")"
export CUDA_VISIBLE_DEVICES="$DEVICES"   # empty for --gpus 0: the CPU
PROCS=$(( GPUS > 1 ? GPUS : 1 ))

# train.py resolves the method and the batch plan (training.json, then --method and the keys) and rejects bad keys.
read -r METHOD PER_DEVICE ACCUMULATION GLOBAL < <(
  "$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} --world_size "$PROCS" \
    --print method,per_device_train_batch_size,gradient_accumulation_steps,effective_batch_size || echo FAILED
)
[[ "$METHOD" != FAILED ]] || exit 2
if [[ -z "$BACKEND" ]]; then
  if (( GPUS <= 1 )); then BACKEND=single
  elif [[ "$METHOD" == full ]]; then BACKEND=fsdp
  else BACKEND=ddp
  fi
fi

CONFIG_FILE=""
TRAIN_FLAGS=()
case "$BACKEND" in
  single)
    CMD=("$PYTHON" "$HERE/train.py") ;;
  ddp)
    CMD=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$PROCS" "$HERE/train.py") ;;
  deepspeed)
    CONFIG_FILE="$HERE/ds_zero3.json"
    TRAIN_FLAGS=(--deepspeed "$CONFIG_FILE")
    CMD=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$PROCS" "$HERE/train.py" "${TRAIN_FLAGS[@]}") ;;
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
    fail "--backend must be fsdp, ddp or deepspeed, got '$BACKEND'" ;;
esac
CMD+=(${ARGS[@]+"${ARGS[@]}"})

if (( DRY_RUN )); then
  if (( GPUS )); then echo "# GPUs: $GPUS of $VISIBLE visible"; else echo "# GPUs: none (the CPU)"; fi
  echo "# devices: CUDA_VISIBLE_DEVICES=${DEVICES:-'' (the CPU)}"
  echo "# method: $METHOD"
  echo "# backend: $BACKEND"
  echo "# processes: $PROCS"
  echo "# batch: $PER_DEVICE per device x $PROCS processes x $ACCUMULATION accumulation steps = global batch $GLOBAL"
  echo "# command:"
  printf 'CUDA_VISIBLE_DEVICES=%q ' "$DEVICES"
  printf '%q ' "${CMD[@]}"
  echo
  if [[ -n "$CONFIG_FILE" ]]; then
    echo "# $(basename "$CONFIG_FILE"):"
    cat "$CONFIG_FILE"
  fi
  echo "# resolved configuration (per process):"
  exec "$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"} --dry_run --world_size "$PROCS"
fi

# Missing packages (bitsandbytes, deepspeed, peft) or a bad checkpoint fail here, before any process loads anything.
"$PYTHON" "$HERE/train.py" ${ARGS[@]+"${ARGS[@]}"} ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"} --check || exit 2
exec "${CMD[@]}"
