#!/usr/bin/env bash
# Train a PRM from a base Qwen2.5-VL on this node (accelerate + DeepSpeed). Says where and on what;
# every hyper-parameter comes from the recipe (CONFIG, default train/configs/prm_default.yaml:
# the paper's) and training flags after it (EXTRA_ARGS, then this script's own arguments) override it.
#
#   DATA=data/prm_export OUTPUT_DIR=outputs/prm bash train/sft_qwen.sh
#   MODEL=Qwen/Qwen2.5-VL-3B-Instruct NUM_GPUS=4 ZERO_STAGE=3 DATA=... bash train/sft_qwen.sh --learning_rate 2e-5
#   RESUME=last DATA=... bash train/sft_qwen.sh --use_lora true --save_steps 200
#   DRY_RUN=1 DATA=... bash train/sft_qwen.sh      # check, print the resolved settings and command
#
# Variables: DATA, EVAL_DATA, MODEL, OUTPUT_DIR (default: the recipe's), CONFIG, NUM_GPUS (default
# all visible GPUs; without CUDA, CPU ranks, default 1), ZERO_STAGE (2|3), RESUME (last | a
# checkpoint dir: the newest complete one), DRY_RUN=1, EXTRA_ARGS, PYTHON. The hardware
# adjustments (CPU: fp32, gloo/ccl, torch AdamW) and the stop/kill handling are in
# vlprm/training/launcher.py; Ctrl-C or a scheduler's SIGTERM stops every rank.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python; fi
fi

ARGS=(--config "${CONFIG:-$REPO/train/configs/prm_default.yaml}")
[ -n "${NUM_GPUS:-}" ] && ARGS+=(--num_gpus "$NUM_GPUS")
[ -n "${ZERO_STAGE:-}" ] && ARGS+=(--zero_stage "$ZERO_STAGE")
[ -n "${MODEL:-}" ] && ARGS+=(--model_name_or_path "$MODEL")
[ -n "${DATA:-}" ] && ARGS+=(--dataset "$DATA")
[ -n "${EVAL_DATA:-}" ] && ARGS+=(--eval_dataset "$EVAL_DATA")
[ -n "${OUTPUT_DIR:-}" ] && ARGS+=(--output_dir "$OUTPUT_DIR")
[ -n "${RESUME:-}" ] && ARGS+=(--resume_from_checkpoint "$RESUME")
[ "${DRY_RUN:-0}" = 1 ] && ARGS+=(--dry_run)
eval "EXTRA=(${EXTRA_ARGS:-})"   # keeps quoted arguments together

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # a checkout works without installing
exec "$PYTHON" -m vlprm.training.launcher "${ARGS[@]}" "${EXTRA[@]}" "$@"
