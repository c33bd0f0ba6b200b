"""Rollout data synthesis: problems -> rollouts -> MC -> judge -> combined labels -> PRM dataset.

    python rollout_data_generation/run.py --config rollout_data_generation/configs/tiny.yaml \
        [--section.key value ...]        # e.g. --mc.method binary_search --policy.n 4

`--help` lists every config key. All logic lives in `vlprm.synthesis.pipeline`.
"""

import sys

from vlprm.synthesis.pipeline import main

if __name__ == "__main__":  # vLLM starts worker processes with spawn: keep the guard
    sys.exit(main())
