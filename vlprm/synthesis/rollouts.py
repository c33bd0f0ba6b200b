"""Stage 1: N policy solutions per problem, split into perception and reasoning steps.

One request per problem with n=N and seed ``stable_seed(seed, problem.id)``; candidate i is
solution ``solution_id(problem.id, i)``. Each solution keeps its text, steps (`split_steps`,
optionally capped with max_steps), final answer and whether it is correct. A solution that
cannot be used (the request failed, no steps, truncated when truncated solutions are dropped)
is kept as a failed record with its reason, so the run summary counts it and a resumed run
does not redo it.
"""

from __future__ import annotations

from typing import Sequence

from vlprm.backends.base import GenerationResult
from vlprm.data.schema import Problem, Solution, solution_id
from vlprm.data.store import stable_seed
from vlprm.runs import classify_error
from vlprm.sampling import parse_solution, rollout_request

__all__ = ["classify_error", "rollout_request", "parse_solution", "rollout_records", "solutions_of"]


def rollout_records(problem: Problem, result: GenerationResult, n: int, *, policy: str, style: str,
                    max_steps: int | None, seed: int, drop_truncated: bool) -> list[dict]:
    """The n records (ok or failed) of one problem's generation result."""
    sids = [solution_id(problem.id, i) for i in range(n)]
    if not result.ok:
        return [{"id": sid, "problem_id": problem.id, "status": "failed",
                 "reason": classify_error(result.error), "detail": result.error} for sid in sids]
    out = []
    for i, sid in enumerate(sids):
        if i >= len(result.completions):
            out.append({"id": sid, "problem_id": problem.id, "status": "failed", "reason": "missing_completion",
                        "detail": f"the backend returned {len(result.completions)} of {n} completions"})
            continue
        c = result.completions[i]
        sol = parse_solution(problem, i, c.text, policy=policy, style=style, max_steps=max_steps,
                             seed=stable_seed(seed, problem.id), finish_reason=c.finish_reason,
                             num_tokens=c.num_tokens)
        rec = sol.to_dict()
        rec["status"], rec["reason"], rec["detail"] = "ok", None, None
        if not sol.steps:
            rec["status"], rec["reason"] = "failed", "no_steps"
        elif drop_truncated and c.finish_reason == "length":
            rec["status"], rec["reason"] = "failed", "truncated"
        out.append(rec)
    return out


def solutions_of(records: Sequence[dict]) -> list[Solution]:
    """The usable (status ok) solutions among rollout records."""
    return [Solution.from_dict(r) for r in records if r.get("status", "ok") == "ok"]
