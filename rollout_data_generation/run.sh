#!/usr/bin/env bash
# Rollout data synthesis launcher. Settings come from environment variables:
#   CONFIG  config YAML      (default: rollout_data_generation/configs/default.yaml)
#   OUT     output directory (default: the config's `out`)
#   SHARD   i/n              (default: whole set)
#   EXTRA   more overrides, e.g. EXTRA="--mc.method binary_search --policy.n 4"
# Arguments after run.sh are passed on as overrides too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
CONFIG="${CONFIG:-rollout_data_generation/configs/default.yaml}"
ARGS=(--config "$CONFIG")
[ -n "${OUT:-}" ] && ARGS+=(--out "$OUT")
[ -n "${SHARD:-}" ] && ARGS+=(--shard "$SHARD")
# shellcheck disable=SC2206
[ -n "${EXTRA:-}" ] && ARGS+=(${EXTRA})
ARGS+=("$@")
echo "+ $PYTHON rollout_data_generation/run.py ${ARGS[*]}"
exec "$PYTHON" rollout_data_generation/run.py "${ARGS[@]}"
