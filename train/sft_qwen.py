#!/usr/bin/env python
"""Train a vision-language process reward model (PRM) from a base Qwen2.5-VL.

The model learns to answer "+" or "-" after every step of a solution, in the one PRM
conversation format (`vlprm.prm.format`). Arguments are our `PRMTrainConfig`
(vlprm/training/config.py) plus `transformers.TrainingArguments`; a YAML recipe sets defaults
and flags override it:

    python train/sft_qwen.py --config train/configs/prm_default.yaml \
        --dataset data/prm_export --output_dir outputs/prm --learning_rate 2e-5

Multi-GPU / DeepSpeed: `bash train/sft_qwen.sh` (accelerate launch). The output dir ends up
with a standard Hugging Face model + processor (AutoModelForImageTextToText / AutoProcessor)
and vlprm_prm.json, which the scorer reads to use the same system prompt.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout works without installing

from vlprm.training.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
