#!/usr/bin/env bash
# Train a PRM from a base Qwen2.5-VL with accelerate + DeepSpeed.
#
# Defaults: one node of 8 GPUs, bf16, ZeRO-2, gradient checkpointing and the paper's recipe
# (2 epochs, lr 1e-5 cosine, warmup 0.05, weight decay 1e-4, betas 0.9/0.95, clip 1.0,
# per-device batch 2 x accumulation 4, seed 100, images of 256*28^2 to 1280*28^2 pixels).
# Every default is an environment variable; EXTRA_ARGS goes last, so it overrides anything:
#
#   DATA=data/prm_export OUTPUT_DIR=outputs/prm bash train/sft_qwen.sh
#   MODEL=Qwen/Qwen2.5-VL-3B-Instruct NUM_GPUS=4 LR=2e-5 ZERO_STAGE=3 DATA=... bash train/sft_qwen.sh
#   RESUME=last EXTRA_ARGS="--use_lora true --save_steps 200" DATA=... bash train/sft_qwen.sh
#   DRY_RUN=1 DATA=... bash train/sft_qwen.sh     # print the command only
#
# Without CUDA it trains on CPU: NUM_GPUS processes (default 1), fp32, DeepSpeed's CPU
# accelerator with torch AdamW (torch_adam: true) and the communication backend DeepSpeed picks
# (gloo, or ccl when oneCCL is installed). What it chose is printed before the command.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "[sft_qwen.sh] $*"; }

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python; fi
fi
MODEL=${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA=${DATA:-}
EVAL_DATA=${EVAL_DATA:-}
CONFIG=${CONFIG:-$REPO/train/configs/prm_default.yaml}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/prm-$(basename "$MODEL")}
RUN_NAME=${RUN_NAME:-$(basename "$OUTPUT_DIR")}
ZERO_STAGE=${ZERO_STAGE:-2}
DS_CONFIG=${DS_CONFIG:-$REPO/train/configs/zero${ZERO_STAGE}.json}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$REPO/train/configs/accelerate_deepspeed.yaml}
EPOCHS=${EPOCHS:-2}
LR=${LR:-1e-5}
SCHEDULER=${SCHEDULER:-cosine}
WARMUP=${WARMUP:-0.05}
WEIGHT_DECAY=${WEIGHT_DECAY:-1e-4}
ADAM_BETA1=${ADAM_BETA1:-0.9}
ADAM_BETA2=${ADAM_BETA2:-0.95}
MAX_GRAD_NORM=${MAX_GRAD_NORM:-1.0}
BATCH=${BATCH:-2}
GRAD_ACC=${GRAD_ACC:-4}
SEED=${SEED:-100}
MIN_PIXELS=${MIN_PIXELS:-$((256 * 28 * 28))}
MAX_PIXELS=${MAX_PIXELS:-$((1280 * 28 * 28))}
MAX_LENGTH=${MAX_LENGTH:-4096}
GRAD_CKPT=${GRAD_CKPT:-true}
LABEL_MODE=${LABEL_MODE:-hard}
SYSTEM_PROMPT=${SYSTEM_PROMPT:-auto}   # auto: the data's own settings record (vlprm import-prm-data), else vlprm
FREEZE_VISION=${FREEZE_VISION:-false}
USE_LORA=${USE_LORA:-false}
REPORT_TO=${REPORT_TO:-wandb}
RESUME=${RESUME:-}                # "last" or a checkpoint directory
PRECISION=${PRECISION:-auto}      # auto (bf16 with CUDA, fp32 on CPU) | bf16 | fp32
NUM_WORKERS=${NUM_WORKERS:-}      # dataloader workers (default: 4 with CUDA, 0 on CPU)
MAIN_PORT=${MAIN_PORT:-}          # rendezvous port (default: a free one)
EXTRA_ARGS=${EXTRA_ARGS:-}
DRY_RUN=${DRY_RUN:-0}

if [ -z "$DATA" ]; then
  echo "sft_qwen.sh: set DATA to the training data (PRM export dir, JSONL file or hub id)" >&2
  exit 2
fi
[ -f "$DS_CONFIG" ] || { echo "sft_qwen.sh: DeepSpeed config $DS_CONFIG not found (ZERO_STAGE=$ZERO_STAGE)" >&2; exit 2; }

# ---- hardware: CUDA GPUs, or CPU processes
N_CUDA=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null | tail -n 1 || true)
N_CUDA=${N_CUDA:-0}
DEVICE_ARGS=()
DS_EFFECTIVE="$DS_CONFIG"
if [ "$N_CUDA" -gt 0 ]; then
  NUM_GPUS=${NUM_GPUS:-$N_CUDA}
  [ "$PRECISION" = auto ] && PRECISION=bf16
  NUM_WORKERS=${NUM_WORKERS:-4}
  if [ "$NUM_GPUS" -gt "$N_CUDA" ]; then
    echo "sft_qwen.sh: NUM_GPUS=$NUM_GPUS but only $N_CUDA CUDA device(s) are visible" >&2
    exit 2
  fi
  say "CUDA: $N_CUDA GPU(s) visible; $NUM_GPUS process(es), $PRECISION, DeepSpeed ZeRO-$ZERO_STAGE ($DS_CONFIG)"
else
  NUM_GPUS=${NUM_GPUS:-1}
  [ "$PRECISION" = auto ] && PRECISION=fp32
  NUM_WORKERS=${NUM_WORKERS:-0}
  export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
  CORES=$(nproc 2>/dev/null || echo 1)
  THREADS=$(( CORES / NUM_GPUS )); [ "$THREADS" -ge 1 ] || THREADS=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}
  COMM=$("$PYTHON" -c "from deepspeed.accelerator import get_accelerator; print(get_accelerator().communication_backend_name())" 2>/dev/null | tail -n 1 || true)
  COMM=${COMM:-gloo}
  # DeepSpeed's fused/CPU Adam would need a C++/CUDA build; torch's AdamW needs none. No CUDA
  # streams to overlap communication with on CPU.
  DS_EFFECTIVE="$OUTPUT_DIR/ds_config.cpu.json"
  if [ "$DRY_RUN" != 1 ]; then
    mkdir -p "$OUTPUT_DIR"
    "$PYTHON" - "$DS_CONFIG" "$DS_EFFECTIVE" "$PRECISION" <<'PY'
import json, sys
src, dst, precision = sys.argv[1:4]
cfg = json.load(open(src))
opt = cfg.setdefault("optimizer", {"type": "AdamW", "params": {}})
opt.setdefault("params", {})["torch_adam"] = True
cfg.setdefault("zero_optimization", {})["overlap_comm"] = False
if precision != "bf16":
    cfg["bf16"] = {"enabled": False}
cfg["fp16"] = {"enabled": False}
json.dump(cfg, open(dst, "w"), indent=2)
PY
  fi
  DEVICE_ARGS=(--ddp_backend "$COMM" --dataloader_pin_memory false)
  say "no CUDA device: CPU training with $NUM_GPUS process(es) x $OMP_NUM_THREADS thread(s), $PRECISION," \
      "DeepSpeed CPU accelerator (DS_ACCELERATOR=$DS_ACCELERATOR), comm backend $COMM," \
      "ZeRO-$ZERO_STAGE with torch AdamW (torch_adam: true): $DS_EFFECTIVE"
fi

case "$PRECISION" in
  bf16) MIXED=bf16; BF16=true ;;
  fp32|no) MIXED=no; BF16=false ;;
  *) echo "sft_qwen.sh: PRECISION must be auto, bf16 or fp32 (got $PRECISION)" >&2; exit 2 ;;
esac
ZERO3_INIT=false; [ "$ZERO_STAGE" = 3 ] && ZERO3_INIT=true
if [ -z "$MAIN_PORT" ]; then
  MAIN_PORT=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
fi
WORKER_ARGS=(--dataloader_num_workers "$NUM_WORKERS")
[ "$NUM_WORKERS" = 0 ] && WORKER_ARGS+=(--dataloader_persistent_workers false)

eval "EXTRA=($EXTRA_ARGS)"   # keeps quoted arguments together
CMD=(
  "$PYTHON" -m accelerate.commands.launch
  --config_file "$ACCELERATE_CONFIG"
  --num_machines 1 --num_processes "$NUM_GPUS" --main_process_port "$MAIN_PORT"
  --mixed_precision "$MIXED"
  --deepspeed_config_file "$DS_EFFECTIVE" --zero3_init_flag "$ZERO3_INIT"
  "$REPO/train/sft_qwen.py"
  --config "$CONFIG"
  --model_name_or_path "$MODEL"
  --dataset "$DATA"
  --output_dir "$OUTPUT_DIR"
  --run_name "$RUN_NAME"
  --num_train_epochs "$EPOCHS"
  --learning_rate "$LR"
  --lr_scheduler_type "$SCHEDULER"
  --warmup_steps "$WARMUP"
  --weight_decay "$WEIGHT_DECAY"
  --adam_beta1 "$ADAM_BETA1"
  --adam_beta2 "$ADAM_BETA2"
  --max_grad_norm "$MAX_GRAD_NORM"
  --per_device_train_batch_size "$BATCH"
  --gradient_accumulation_steps "$GRAD_ACC"
  --seed "$SEED"
  --min_pixels "$MIN_PIXELS"
  --max_pixels "$MAX_PIXELS"
  --max_length "$MAX_LENGTH"
  --gradient_checkpointing "$GRAD_CKPT"
  --label_mode "$LABEL_MODE"
  --system_prompt "$SYSTEM_PROMPT"
  --freeze_vision "$FREEZE_VISION"
  --use_lora "$USE_LORA"
  --report_to "$REPORT_TO"
  --bf16 "$BF16"
  "${WORKER_ARGS[@]}"
  "${DEVICE_ARGS[@]}"
)
[ -n "$EVAL_DATA" ] && CMD+=(--eval_dataset "$EVAL_DATA")
[ -n "$RESUME" ] && CMD+=(--resume_from_checkpoint "$RESUME")
CMD+=("${EXTRA[@]}")

say "command:"
printf '%q ' "${CMD[@]}"
echo
if [ "$DRY_RUN" = 1 ]; then
  say "DRY_RUN=1: not running"
  exit 0
fi
exec "${CMD[@]}"
