"""The `vlprm` command: one subcommand per stage.

    vlprm tiny-model --out DIR          build the embedded tiny Qwen2.5-VL
    vlprm puzzles generate --out DIR    procedural PuzzleVQA/AlgoPuzzleVQA-style puzzles
    vlprm tiny-policy --out DIR         the tiny model warmed up on gold puzzle solutions (tiny judge: python -m vlprm.models.tiny_judge)
    vlprm quickstart                    the whole pipeline on the embedded tiny model
    vlprm synthesize ...                    rollout data synthesis (= rollout_data_generation/run.py)
    vlprm train ...                     PRM training (= train/sft_qwen.py)
    vlprm score ...                     score solutions with a PRM (python -m vlprm.prm.scorer)
    vlprm import-prm-data --format vl-prm|visualprm SRC --out DIR   a released PRM training set
    vlprm prm-config --from-dataset DIR --out CKPT   a PRM's settings record into its checkpoint
    vlprm eval ...                      test-time scaling evaluation (= eval/run_eval.py)

Each subcommand takes --help. Arguments after the subcommand go to it unchanged.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with a main(argv) function, one-line help)
COMMANDS = {
    "tiny-model": ("vlprm.models.tiny", "build the embedded tiny Qwen2.5-VL"),
    "puzzles": ("vlprm.puzzles.generate", "generate procedural puzzles (PuzzleVQA format)"),
    "tiny-policy": ("vlprm.models.tiny_policy", "warm the tiny model up into a tiny puzzle policy"),
    "quickstart": ("vlprm.quickstart", "run the pipeline end to end on the tiny model"),
    "synthesize": ("vlprm.synthesis.pipeline", "rollout data synthesis: rollouts, MC, judge, combine, export"),
    "train": ("vlprm.training.main", "train a PRM (same as train/sft_qwen.py)"),
    "score": ("vlprm.prm.scorer", "score solutions with a PRM"),
    "import-prm-data": ("vlprm.prm.importer", "convert a released PRM training set (VL-PRM300K, VisualPRM400K)"),
    "prm-config": ("vlprm.prm.settings", "write a PRM's settings record (vlprm_prm.json) into its checkpoint"),
    "eval": ("vlprm.evaluation.runner", "test-time scaling evaluation (same as eval/run_eval.py)"),
}


def _usage() -> str:
    lines = ["usage: vlprm <command> [args...]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vlprm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
