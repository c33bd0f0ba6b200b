"""Test-time scaling evaluation entry point (logic in vlprm.evaluation.runner).

    python eval/run_eval.py --config eval/configs/default.yaml --prm.model path/to/prm
"""

import sys

from vlprm.evaluation.runner import main

if __name__ == "__main__":
    sys.exit(main())
