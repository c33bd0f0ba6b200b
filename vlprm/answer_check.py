"""Measure how often the answer checker agrees with known verdicts: `python -m vlprm.answers --check FILE`.

A case file is JSONL, one case a line:
``{"benchmark", "options", "gold", "answer_type", "model_output", "expected", "note"?, "metadata"?}``
where ``expected`` is the correct verdict (true / false) for ``model_output`` against ``gold``.
``metadata`` is the problem's metadata as the loaders write it ("precision", "unit",
"accepted_answers"); a list ``gold`` is read as MMMU's list of accepted answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

_REQUIRED = ("benchmark", "gold", "answer_type", "model_output", "expected")


@dataclass
class CaseResult:
    """One case's verdict next to the expected one."""

    line: int
    benchmark: str
    note: str
    expected: bool
    got: bool
    extracted: str | None

    @property
    def agrees(self) -> bool:
        return self.expected == self.got


def problem_from_case(case: dict) -> dict:
    """The problem dict `check_answer` takes, built from a case (a list gold -> accepted answers)."""
    gold = case["gold"]
    metadata = dict(case.get("metadata") or {})
    if isinstance(gold, list):
        metadata["accepted_answers"] = [str(g) for g in gold]
        gold = str(gold[0]) if gold else ""
    return {"answer": gold, "answer_type": case["answer_type"], "options": case.get("options"),
            "metadata": metadata}


def load_cases(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, case) for each non-blank line. Raises ValueError naming the line for a bad one."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e}); fix or remove the line") from None
            missing = [k for k in _REQUIRED if k not in case]
            if missing:
                raise ValueError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            out.append((n, case))
    return out


def run_cases(cases: Iterable[tuple[int, dict]], check: Callable | None = None,
              extract: Callable | None = None) -> list[CaseResult]:
    """Check every case. `check` / `extract` default to vlprm.answers' (pass others to compare checkers)."""
    if check is None or extract is None:
        from vlprm.answers import check_answer, extract_answer

        check = check or check_answer
        extract = extract or extract_answer
    results = []
    for n, case in cases:
        problem = problem_from_case(case)
        got = bool(check(case["model_output"], problem))
        extracted = extract(case["model_output"], problem["options"], problem["answer_type"])
        results.append(CaseResult(n, str(case["benchmark"]), str(case.get("note", "")), bool(case["expected"]),
                                  got, extracted))
    return results


def agreement_by_benchmark(results: list[CaseResult]) -> dict[str, tuple[int, int]]:
    """{benchmark: (agreeing, total)}, plus "overall"."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        for key in (r.benchmark, "overall"):
            table[key][0] += r.agrees
            table[key][1] += 1
    return {k: (v[0], v[1]) for k, v in table.items()}


def format_report(results: list[CaseResult], show_disagreements: bool = True) -> str:
    """A per-benchmark agreement table, then (optionally) each disagreeing case."""
    table = agreement_by_benchmark(results)
    lines = [f"{'benchmark':<16}{'agree':>7}{'total':>7}{'rate':>8}"]
    for bench in sorted(k for k in table if k != "overall") + ["overall"]:
        a, t = table.get(bench, (0, 0))
        lines.append(f"{bench:<16}{a:>7}{t:>7}{(a / t if t else 0):>8.1%}")
    if show_disagreements:
        for r in results:
            if not r.agrees:
                lines.append(f"line {r.line} [{r.benchmark}] expected {r.expected}, got {r.got}; "
                             f"extracted {r.extracted!r}; {r.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: print agreement per benchmark; exit 1 if below --min (when given), 2 on a bad file."""
    ap = argparse.ArgumentParser(prog="python -m vlprm.answers",
                                 description="Agreement of the answer checker with known verdicts.")
    ap.add_argument("--check", metavar="FILE.jsonl", required=True,
                    help="cases {benchmark, options, gold, answer_type, model_output, expected[, metadata, note]}")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the table, not each disagreeing case")
    ap.add_argument("--min", type=float, default=None, help="exit 1 if overall agreement is below this (0-1)")
    args = ap.parse_args(argv)
    try:
        results = run_cases(load_cases(args.check))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(results, show_disagreements=not args.quiet))
    a, t = agreement_by_benchmark(results).get("overall", (0, 0))
    if args.min is not None and (not t or a / t < args.min):
        return 1
    return 0
