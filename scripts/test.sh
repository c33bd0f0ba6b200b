#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not slow"      # the quick subset
#   bash scripts/test.sh tests/test_store.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest tests -q --durations=15 "$@"
