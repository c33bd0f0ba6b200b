"""Procedural PuzzleVQA / AlgoPuzzleVQA-style puzzles: offline, seeded, drawn with PIL.

    from vlprm.puzzles import FAMILIES, generate_puzzles
    records = generate_puzzles("data/puzzles", n=200, seed=0)   # writes {family}.json + images/

or ``python -m vlprm.puzzles generate --out DIR --n N --seed S [--types fam ...]``.
Every record carries ground truth for process supervision (caption, explanation, deduction,
perception_facts, reasoning_steps) and the puzzle parameters in ``metadata``; each family's
``solve(metadata)`` recomputes the answer. Importing this package only defines and registers the
families; nothing is drawn or written.
"""

from vlprm.puzzles import abstract as _abstract  # noqa: F401  (registers the families)
from vlprm.puzzles import algorithmic as _algorithmic  # noqa: F401
from vlprm.puzzles.base import FAMILIES, Puzzle, PuzzleCheckError, PuzzleFamily, item_rng
from vlprm.puzzles.generate import generate_puzzles, make_puzzle, to_record

ABSTRACT = [name for name, fam in FAMILIES.items() if fam.kind == "abstract"]
ALGORITHMIC = [name for name, fam in FAMILIES.items() if fam.kind == "algorithmic"]

__all__ = ["FAMILIES", "ABSTRACT", "ALGORITHMIC", "Puzzle", "PuzzleFamily", "PuzzleCheckError",
           "generate_puzzles", "make_puzzle", "to_record", "item_rng"]
