"""Command line of PRM training (`train/sft_qwen.py`, `vlprm train`): parse, then `train_prm`."""

from __future__ import annotations

DESCRIPTION = "Train a vision-language PRM (Qwen2.5-VL) to answer '+'/'-' after every solution step."
EPILOG = ("--config FILE: a YAML recipe (e.g. train/configs/prm_default.yaml) whose keys are any of the "
          "options above; command-line flags override it. An 'env:' mapping in it sets environment variables.")


def parse_args(argv: list[str] | None = None):
    """(PRMTrainConfig, TrainingArguments) from a YAML recipe (--config) and flags."""
    from transformers import TrainingArguments
    from trl import TrlParser

    from vlprm.training.config import PRMTrainConfig

    parser = TrlParser((PRMTrainConfig, TrainingArguments), description=DESCRIPTION, epilog=EPILOG)
    return parser.parse_args_and_config(argv)


def main(argv: list[str] | None = None) -> int:
    from vlprm.training.run import train_prm

    cfg, args = parse_args(argv)
    train_prm(cfg, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
