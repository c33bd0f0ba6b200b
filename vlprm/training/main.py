"""Command line of PRM training (`train/sft_qwen.py`, `vlprm train`): parse, then `train_prm`."""

from __future__ import annotations

import os
import sys

from vlprm.config import ConfigError

DESCRIPTION = "Train a vision-language PRM (Qwen2.5-VL) to answer '+'/'-' after every solution step."
EPILOG = ("--config FILE: a YAML recipe (e.g. train/configs/prm_default.yaml) whose keys are any of the "
          "options above; command-line flags override it. An 'env:' mapping in it sets environment variables.")


def _argparse_error(message: str):
    raise ConfigError(message)


def parse_args(argv: list[str] | None = None):
    """(PRMTrainConfig, TrainingArguments) from a YAML recipe (--config) and flags. A mistake
    (unknown flag or recipe key, bad value, missing recipe file) raises ConfigError."""
    from transformers import TrainingArguments
    from trl import TrlParser

    from vlprm.training.config import PRMTrainConfig

    parser = TrlParser((PRMTrainConfig, TrainingArguments), description=DESCRIPTION, epilog=EPILOG)
    parser.error = _argparse_error  # one line, not argparse's usage screen of every option
    try:
        cfg, args, unknown = parser.parse_args_and_config(argv, return_remaining_strings=True)
    except ConfigError:
        raise
    except (ValueError, TypeError, OSError) as e:  # recipe file, value checks of the dataclasses
        raise ConfigError(" ".join(str(e).split())) from e
    if unknown:
        raise ConfigError(f"unknown training option(s) {' '.join(unknown)}: see `python train/sft_qwen.py --help` "
                          "for the PRMTrainConfig and transformers TrainingArguments options")
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    from vlprm.training.run import train_prm

    if "LOCAL_RANK" in os.environ:  # a rank started by a launcher: stop when it stops, even if killed
        from vlprm.training.process_tree import die_with_parent

        die_with_parent()
    try:
        cfg, args = parse_args(argv)
    except ConfigError as e:
        print(f"vlprm train: {e}", file=sys.stderr)
        return 2
    train_prm(cfg, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
