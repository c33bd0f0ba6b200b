#!/usr/bin/env bash
# Sweep of PRM trainings on PBS or SLURM: one job per combination of swept values, each running
# train/sft_qwen.sh (logic: vlprm/jobs/sweep.py; `bash train/launch.sh --help`).
#
#   SWEEP_learning_rate="1e-5 2e-5" SWEEP_num_train_epochs="1 2" DATA=data/prm_export \
#       SCHEDULER=slurm JOB_QUEUE=gpu bash train/launch.sh [--dry-run]
#   bash train/launch.sh --sweep train/configs/sweep_example.yaml [--dry-run]
#
# Lower-case keys are recipe keys (sft_qwen.py flags), upper-case ones sft_qwen.sh variables
# (MODEL, DATA, NUM_GPUS, ZERO_STAGE, ...). Resources: JOB_CPUS, JOB_GPUS, JOB_MEM, JOB_WALLTIME,
# JOB_QUEUE, JOB_ACCOUNT, JOB_EXTRA, JOB_SETUP. SWEEP_ROOT: where jobs/, logs/, jobs.tsv and runs go.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python )}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m vlprm.jobs.sweep "$@"
