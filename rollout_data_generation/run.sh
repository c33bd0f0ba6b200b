#!/usr/bin/env bash
# Synthesis launcher: says where it runs and on what; defaults live in the config YAML.
#   CONFIG=rollout_data_generation/configs/tiny.yaml OUT=runs/x bash rollout_data_generation/run.sh
#   GPUS=0,1,2,3,4,5,6,7 bash rollout_data_generation/run.sh           # 8 workers, then the merge
#   WORKERS=2 bash rollout_data_generation/run.sh                      # 2 CPU workers
#   SCHEDULER=pbs|slurm SHARDS=8 [DRY_RUN=1] bash rollout_data_generation/run.sh   # array + merge job
#   SHARD=3/16 bash rollout_data_generation/run.sh                     # one shard by hand
# CONFIG (default rollout_data_generation/configs/default.yaml), OUT, SHARD, EXTRA (overrides,
# e.g. "--mc.method binary_search") and arguments go to rollout_data_generation/run.py.
# Workers: python -m vlprm.jobs.workers --help; jobs: python -m vlprm.jobs.cluster --help.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
eval "extra=(${EXTRA:-})"
ARGS=(--config "${CONFIG:-rollout_data_generation/configs/default.yaml}" ${OUT:+--out "$OUT"}
      ${SHARD:+--shard "$SHARD"} ${extra[@]+"${extra[@]}"} "$@")
if [ -n "${SCHEDULER:-}" ]; then RUN=(-m vlprm.jobs.cluster synthesis --)
elif [ -n "${GPUS:-}${WORKERS:-}" ]; then RUN=(-m vlprm.jobs.workers synthesis --)
else RUN=(rollout_data_generation/run.py); fi
echo "[run.sh] $PYTHON ${RUN[*]} ${ARGS[*]}"
exec "$PYTHON" "${RUN[@]}" "${ARGS[@]}"
