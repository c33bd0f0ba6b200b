"""OmegaPRM-style binary search for the first error step (Luo et al., 2024).

A prefix is *alive* if at least one of its K continuations reaches the right answer. Assuming
that once a prefix is dead every longer one is dead too, the first error step is the first
dead prefix, and a binary search finds it with about log2(n) probes instead of n:

    lo = 0                      # the empty prefix is alive (the problem is solvable)
    hi = n    if the final answer is wrong (the full prefix is dead)
         n+1  if there is no final answer (nothing known; n+1 means "no error")
    while hi - lo > 1:  mid = (lo + hi) // 2; probe mid; alive -> lo = mid, dead -> hi = mid
    first error = hi (None if hi == n+1)

Solutions with a correct final answer are not probed: OmegaPRM takes the full prefix that
reaches the right answer as alive, and under the same monotonicity every shorter prefix is
alive too, so all steps are positive and the search would only spend rollouts confirming that.
(A lucky correct answer after a wrong step is left to the judge: the hybrid label drops a
solution the judge faults.) Their steps get ``mc_probed`` False and no counts.

The search proceeds in rounds; the prefixes of one round, across all solutions of the batch,
go out in ONE generate() call. Every probed prefix is recorded (``probes``: k, correct,
total, in probe order) and its counts go into that step's evidence; the other steps get no
counts (``mc_probed`` False) and their labels are inferred from the first error in
`vlprm.synthesis.combine`.
"""

from __future__ import annotations

from typing import Sequence

from vlprm.data.schema import Problem, Solution, StepEvidence
from vlprm.synthesis.mc import MCResult, Prober, _failed, _from_answer, _set_probe, answer_known


def binary_search(pairs: Sequence[tuple[Problem, Solution]], prober: Prober, *,
                  last_step_from_answer: bool = True) -> list[MCResult]:
    """Find each solution's first error step by batched binary search over step prefixes."""
    results: list[MCResult] = []
    state: list[tuple[Problem, Solution, MCResult, list[int]]] = []  # [lo, hi] per solution
    for problem, sol in pairs:
        n = len(sol.steps)
        res = MCResult(sol.id, problem.id, "binary_search", prober.k, [StepEvidence() for _ in range(n)])
        results.append(res)
        if answer_known(sol, last_step_from_answer):
            res.evidence[-1] = _from_answer(sol)
            if sol.correct:
                res.first_error_step = None  # alive at the end: nothing to search
                res.evidence[-1].extra["mc_note"] = "correct answer: earlier prefixes not probed"
                continue
            hi = n
        else:
            hi = n + 1
        state.append((problem, sol, res, [0, hi]))

    rnd = 1
    live = [t for t in state if t[3][1] - t[3][0] > 1]
    while live:
        items = [(p, s, (b[0] + b[1]) // 2) for p, s, _, b in live]
        probes = prober.probe(items, desc=f"mc binary_search round {rnd}")
        nxt = []
        for (p, sol, res, bounds), pr in zip(live, probes):
            res.probes.append(pr)
            if pr.error:
                _failed(res, [pr])
                continue
            _set_probe(res.evidence[pr.k - 1], pr)
            if pr.correct > 0:
                bounds[0] = pr.k
            else:
                bounds[1] = pr.k
            if bounds[1] - bounds[0] > 1:
                nxt.append((p, sol, res, bounds))
        live = nxt
        rnd += 1
    for _, sol, res, (_, hi) in state:
        if res.status == "ok":
            res.first_error_step = hi if hi <= len(sol.steps) else None
    return results
