#!/usr/bin/env bash
# Example PBS array job: 8 shards of one synthesis run, one GPU each, then a merge.
#   qsub rollout_data_generation/pbs_array_example.sh            # the array
#   qsub -W depend=afterokarray:<array job id> -v MERGE=1 rollout_data_generation/pbs_array_example.sh
# Adapt the resource lines to your cluster.
#PBS -N vlprm-synth
#PBS -J 0-7
#PBS -l select=1:ncpus=16:ngpus=1:mem=128gb
#PBS -l walltime=24:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-$(dirname "$0")/..}"
NSHARDS="${NSHARDS:-8}"
export CONFIG="${CONFIG:-rollout_data_generation/configs/default.yaml}"
export OUT="${OUT:-runs/synthesis}"
if [ -n "${MERGE:-}" ]; then
  # After all shards: join their stage files by key, then combine + export once.
  exec "${PYTHON:-python}" rollout_data_generation/merge_shards.py --run "$OUT"
fi
# Each array index is one shard; a killed or requeued shard resumes where it stopped.
export SHARD="${PBS_ARRAY_INDEX:-0}/${NSHARDS}"
exec bash rollout_data_generation/run.sh
