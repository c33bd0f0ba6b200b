#!/usr/bin/env bash
# Set up (idempotent), then run the whole pipeline on the embedded tiny model:
# puzzles -> synthesis -> PRM training -> evaluation, ending in a metrics table and a plot.
# Arguments go to `python -m vlprm.quickstart` (see --help), e.g. --n-eval 24 --n 16.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m vlprm.quickstart "$@"
