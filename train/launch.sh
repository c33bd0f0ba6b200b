#!/usr/bin/env bash
# PBS sweep of PRM trainings: one job per combination of swept train/sft_qwen.sh variables.
#
#   SWEEP_LR="1e-5 2e-5" SWEEP_EPOCHS="1 2" DATA=data/prm_export PBS_QUEUE=gpu PBS_PROJECT=abc123 \
#       bash train/launch.sh [--dry-run]
#   bash train/launch.sh --sweep train/configs/sweep_example.yaml [--dry-run]
#
# SWEEP_<NAME>="v1 v2 ..." sweeps any sft_qwen.sh variable (LR, EPOCHS, BATCH, GRAD_ACC,
# ZERO_STAGE, LABEL_MODE, MODEL, ...); sft_qwen.sh variables set here (MODEL, DATA, ...) are
# written into every job. PBS resources: PBS_SELECT (1), PBS_NCPUS (64), PBS_NGPUS (8),
# PBS_MEM (500gb), PBS_WALLTIME (24:00:00), PBS_NAME (job name prefix, vlprm-prm), PBS_QUEUE (-q),
# PBS_PROJECT (-P), PBS_EXTRA (more "#PBS ..." lines), PBS_SETUP (shell lines run first in each
# job, e.g. "module load cuda"). SWEEP_ROOT: where jobs/, logs/, jobs.tsv and each run's output
# dir go (default outputs/sweeps/<name>-<time>). QSUB: the submit command (default qsub).
# --dry-run prints the job scripts without writing or submitting anything.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m vlprm.training.pbs "$@"
