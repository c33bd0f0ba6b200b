#!/usr/bin/env bash
# Launch a test-time scaling evaluation, locally or as PBS jobs.
#
#   bash eval/launch_eval.sh                                   # local, eval/configs/default.yaml
#   CONFIG=eval/configs/tiny.yaml EXTRA="--policy.n 8" bash eval/launch_eval.sh
#   PBS=1 SHARDS=4 bash eval/launch_eval.sh                    # one job per (benchmark, shard),
#                                                              # then a merge job (afterok)
#   PBS=1 DRY_RUN=1 bash eval/launch_eval.sh                   # print the job scripts only
#
# Env: CONFIG, EXTRA (overrides passed to eval/run_eval.py), PYTHON, PBS, SHARDS, BENCHMARKS
# (space-separated names; default: the config's), PBS_SELECT (default
# "select=1:ncpus=16:ngpus=2:mem=200gb"), PBS_WALLTIME (24:00:00), PBS_QUEUE, PBS_PROJECT,
# LOG_DIR (outputs/eval/pbs-logs), DRY_RUN.
# With 2+ GPUs the policy (vLLM) takes GPU 0 and the PRM GPU 1 (prm.device defaults so).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-eval/configs/default.yaml}
EXTRA=${EXTRA:-}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
PBS=${PBS:-0}
SHARDS=${SHARDS:-1}
DRY_RUN=${DRY_RUN:-0}

if [ "$PBS" != 1 ]; then
  cmd=("$PYTHON" eval/run_eval.py --config "$CONFIG")
  # Word-split with shell quoting, as the PBS job scripts below read EXTRA:
  # EXTRA="--benchmarks '[{name: x, path: y}]'" passes one value in both modes.
  eval "extra=($EXTRA)"
  echo "[launch_eval] ${cmd[*]} ${extra[*]:-}"
  exec "${cmd[@]}" ${extra[@]+"${extra[@]}"}
fi

SELECT=${PBS_SELECT:-select=1:ncpus=16:ngpus=2:mem=200gb}
WALLTIME=${PBS_WALLTIME:-24:00:00}
LOG_DIR=${LOG_DIR:-outputs/eval/pbs-logs}
mkdir -p "$LOG_DIR"
if [ -z "${BENCHMARKS:-}" ]; then
  # Each name once: two entries with one name (e.g. two splits) run in the same jobs.
  BENCHMARKS=$("$PYTHON" -c "import yaml,sys; print(' '.join(dict.fromkeys(b['name'] for b in yaml.safe_load(open(sys.argv[1]))['benchmarks'])))" "$CONFIG")
fi

write_job() {  # name, command -> path of the job script
  local name=$1 cmd=$2 path="$LOG_DIR/$1.pbs"
  {
    echo "#!/bin/bash"
    echo "#PBS -N $name"
    echo "#PBS -l $SELECT"
    echo "#PBS -l walltime=$WALLTIME"
    echo "#PBS -o $LOG_DIR/$name.out"
    echo "#PBS -e $LOG_DIR/$name.err"
    [ -n "${PBS_QUEUE:-}" ] && echo "#PBS -q $PBS_QUEUE"
    [ -n "${PBS_PROJECT:-}" ] && echo "#PBS -P $PBS_PROJECT"
    echo "cd $(printf %q "$PWD")"
    echo "$cmd"
  } > "$path"
  echo "$path"
}

job_ids=()
for bench in $BENCHMARKS; do
  for ((i = 0; i < SHARDS; i++)); do
    name="eval-${bench}-${i}of${SHARDS}"
    cmd="$PYTHON eval/run_eval.py --config $CONFIG --only_benchmarks $bench --shard $i/$SHARDS --stages sample,score,search $EXTRA"
    script=$(write_job "$name" "$cmd")
    if [ "$DRY_RUN" = 1 ]; then
      echo "----- $script"; cat "$script"
    else
      id=$(qsub "$script"); echo "[launch_eval] submitted $name: $id"; job_ids+=("$id")
    fi
  done
done
merge_cmd="$PYTHON eval/run_eval.py --config $CONFIG --stages metrics $EXTRA"
script=$(write_job "eval-merge" "$merge_cmd")
if [ "$DRY_RUN" = 1 ]; then
  echo "----- $script (after all of the above)"; cat "$script"
else
  dep=$(IFS=:; echo "${job_ids[*]}")
  id=$(qsub -W depend=afterok:"$dep" "$script"); echo "[launch_eval] submitted merge: $id"
fi
