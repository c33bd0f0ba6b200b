#!/usr/bin/env bash
# Evaluation launcher: says where it runs and on what; defaults live in the config YAML.
#   CONFIG=eval/configs/tiny.yaml EXTRA="--policy.n 8" bash eval/launch_eval.sh   # one process
#   GPUS=0,1,2,3,4,5,6,7 GPUS_PER_WORKER=2 bash eval/launch_eval.sh             # 4 workers + merge
#   WORKERS=2 bash eval/launch_eval.sh                                          # 2 CPU workers
#   SCHEDULER=pbs|slurm SHARDS=4 [DRY_RUN=1] bash eval/launch_eval.sh           # array + merge job
# CONFIG (default eval/configs/default.yaml), OUT (output root), EXTRA (shell-quoted overrides)
# and arguments go to eval/run_eval.py. Workers: python -m vlprm.jobs.workers --help; jobs and
# their resources (JOB_CPUS, JOB_GPUS, JOB_MEM, JOB_WALLTIME, JOB_QUEUE, ...): python -m vlprm.jobs.cluster --help.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
eval "extra=(${EXTRA:-})"  # shell quoting: EXTRA="--benchmarks '[{name: x, path: y}]'" is one value
ARGS=(--config "${CONFIG:-eval/configs/default.yaml}" ${OUT:+--output_root "$OUT"} ${extra[@]+"${extra[@]}"} "$@")
if [ -n "${SCHEDULER:-}" ]; then RUN=(-m vlprm.jobs.cluster evaluation --)
elif [ -n "${GPUS:-}${WORKERS:-}" ]; then RUN=(-m vlprm.jobs.workers evaluation --)
else RUN=(eval/run_eval.py); fi
echo "[launch_eval] $PYTHON ${RUN[*]} ${ARGS[*]}"
exec "$PYTHON" "${RUN[@]}" "${ARGS[@]}"
