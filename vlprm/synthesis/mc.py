"""Monte Carlo step estimation: how often does the policy reach the right answer from a step prefix?

For a solution with steps s_1..s_n, the prefix ending at step k is continued K times by the
policy (one request with n=K, so the engine shares the prefix); the step's evidence is
``mc_correct`` of ``mc_total`` continuations whose final answer is right.

Two methods share the `Prober` below (same requests, same seeds, so the same prefix gives the
same counts under either method):

- ``per_step`` (this module, Math-Shepherd style): every prefix k = 1..n is probed. With
  ``early_stop`` the prefixes are probed in rounds k = 1, 2, ... and a solution stops after its
  first step with zero successes (later steps: ``mc_probed`` False, no counts).
- ``binary_search`` (`vlprm.synthesis.omegaprm`, OmegaPRM style): only the prefixes a binary
  search for the first failing step needs.

The last step: its prefix is the whole solution, whose final answer is already known. With
``last_step_from_answer`` (default) it is not rolled out; its evidence is 1/1 or 0/1 from the
answer check (``extra["mc_source"] = "final_answer"``). A solution without a final answer
(truncated) has its last step probed like the others.

Step numbers in records are 1-based ("Step k" as the policy writes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from vlprm.answers import check_answer, extract_answer
from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.data.schema import Problem, Solution, StepEvidence
from vlprm.data.store import stable_seed
from vlprm.prompts import build_policy_messages
from vlprm.steps import step_prefix

METHODS = ("per_step", "binary_search")


def continuation_correct(problem: Problem, prefix: str, continuation: str) -> bool:
    """Does prefix + continuation end in the right answer? (The last \\boxed{} wins, so a
    continuation's answer overrides one inside the prefix.)"""
    ans = extract_answer(prefix + continuation, options=problem.options, answer_type=problem.answer_type)
    return ans is not None and check_answer(ans, problem, extract=False)


@dataclass
class Probe:
    """One probed prefix: the first `k` steps of a solution continued `total` times."""

    solution_id: str
    k: int
    correct: int = 0
    total: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        d = {"k": self.k, "correct": self.correct, "total": self.total}
        if self.error:
            d["error"] = self.error
        return d


class Prober:
    """Continue step prefixes with the policy and count correct final answers.

    Args:
        generator: the policy backend (any `Generator`).
        k: continuations per prefix (one request with n=k).
        sampling: temperature / top_p / max_tokens of the continuations (its n is replaced by k).
        style: the policy output style ("structured" or "plain"), used to write the prefix.
        seed: global seed; the prefix (solution id, k) gets ``stable_seed(seed, solution_id, "mc", k)``.
    """

    def __init__(self, generator: Generator, k: int, sampling: SamplingConfig, *, style: str = "structured",
                 seed: int = 0, progress: bool = True):
        if k < 1:
            raise ValueError(f"mc.k (continuations per prefix) must be >= 1, got {k}")
        self.generator = generator
        self.k = k
        self.sampling = sampling.replace(n=k)
        self.style = style
        self.seed = seed
        self.progress = progress
        self.rollouts = 0  # continuations requested so far

    def request(self, problem: Problem, solution: Solution, k: int) -> ChatRequest:
        """The continuation request of the prefix ending at step k (1-based)."""
        prefix = step_prefix(solution.steps, k, self.style)
        messages = build_policy_messages(problem, self.style)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": prefix}]})
        return ChatRequest(messages=messages, continue_final_message=True,
                           seed=stable_seed(self.seed, solution.id, "mc", k), id=f"{solution.id}@{k}")

    def probe(self, items: Sequence[tuple[Problem, Solution, int]], desc: str = "mc") -> list[Probe]:
        """Probe every (problem, solution, k) in ONE generate() call; results in input order."""
        if not items:
            return []
        requests = [self.request(p, s, k) for p, s, k in items]
        results = self.generator.generate(requests, self.sampling, progress=self.progress, desc=desc)
        out = []
        for (problem, solution, k), res in zip(items, results):
            pr = Probe(solution.id, k)
            if not res.ok:
                pr.error = res.error
            else:
                prefix = step_prefix(solution.steps, k, self.style)
                pr.total = len(res.completions)
                pr.correct = sum(continuation_correct(problem, prefix, c.text) for c in res.completions)
                self.rollouts += pr.total
            out.append(pr)
        return out


@dataclass
class MCResult:
    """The MC evidence of one solution (a line of mc.jsonl)."""

    solution_id: str
    problem_id: str
    method: str
    k: int
    evidence: list[StepEvidence]
    probes: list[Probe] = field(default_factory=list)
    first_error_step: int | None = None  # 1-based; None = no failing step found
    status: str = "ok"
    reason: str | None = None
    detail: str | None = None

    @property
    def rollouts(self) -> int:
        return sum(p.total for p in self.probes)

    def to_record(self) -> dict:
        return {"id": self.solution_id, "problem_id": self.problem_id, "status": self.status,
                "reason": self.reason, "detail": self.detail, "method": self.method, "k": self.k,
                "first_error_step": self.first_error_step, "rollouts": self.rollouts,
                "probes": [p.to_dict() for p in self.probes],
                "steps": [e.to_dict() for e in self.evidence]}


def evidence_from_record(rec: dict) -> list[StepEvidence]:
    return [StepEvidence.from_dict(d) for d in rec.get("steps") or []]


def _set_probe(ev: StepEvidence, pr: Probe) -> None:
    ev.mc_correct, ev.mc_total, ev.mc_probed = pr.correct, pr.total, True


def _from_answer(solution: Solution) -> StepEvidence:
    return StepEvidence(mc_correct=int(bool(solution.correct)), mc_total=1, mc_probed=True,
                        extra={"mc_source": "final_answer"})


def answer_known(solution: Solution, last_step_from_answer: bool) -> bool:
    """Whether the last step's evidence comes from the final-answer check instead of rollouts."""
    return last_step_from_answer and solution.final_answer is not None


def _failed(res: MCResult, probes: Sequence[Probe]) -> None:
    bad = next(p for p in probes if p.error)
    res.status, res.reason = "failed", "generation_error"
    res.detail = f"prefix {bad.k}: {bad.error}"


def per_step(pairs: Sequence[tuple[Problem, Solution]], prober: Prober, *, early_stop: bool = False,
             last_step_from_answer: bool = True) -> list[MCResult]:
    """Per-step MC for every solution. Without early_stop all prefixes of all solutions go out in
    one generate() call; with it, in rounds (round r probes prefix r of every live solution)."""
    results = []
    todo: list[tuple[Problem, Solution, MCResult, int]] = []  # (problem, solution, result, last k to probe)
    for problem, sol in pairs:
        n = len(sol.steps)
        res = MCResult(sol.id, problem.id, "per_step", prober.k, [StepEvidence() for _ in range(n)])
        last = n
        if n and answer_known(sol, last_step_from_answer):
            res.evidence[-1] = _from_answer(sol)
            last = n - 1
        results.append(res)
        todo.append((problem, sol, res, last))

    def finish(res: MCResult) -> None:
        res.first_error_step = next((i for i, e in enumerate(res.evidence, 1)
                                     if e.mc_total and e.mc_correct == 0), None)

    if not early_stop:
        items = [(p, s, k) for p, s, _, last in todo for k in range(1, last + 1)]
        probes = prober.probe(items, desc="mc per_step")
        by_sol: dict[str, list[Probe]] = {}
        for pr in probes:
            by_sol.setdefault(pr.solution_id, []).append(pr)
        for _, sol, res, _ in todo:
            ps = by_sol.get(sol.id, [])
            res.probes = ps
            if any(p.error for p in ps):
                _failed(res, ps)
                continue
            for pr in ps:
                _set_probe(res.evidence[pr.k - 1], pr)
            finish(res)
        return results

    live = [t for t in todo]
    rnd = 1
    while live:
        items = [(p, s, rnd) for p, s, _, last in live if rnd <= last]
        probes = prober.probe(items, desc=f"mc per_step round {rnd}")
        by_sol = {pr.solution_id: pr for pr in probes}
        nxt = []
        for p, sol, res, last in live:
            pr = by_sol.get(sol.id)
            if pr is None:  # all its probe-able prefixes are done
                continue
            res.probes.append(pr)
            if pr.error:
                _failed(res, [pr])
                continue
            _set_probe(res.evidence[rnd - 1], pr)
            if pr.correct == 0:
                continue  # first dead prefix: later steps are not probed
            nxt.append((p, sol, res, last))
        live = nxt
        rnd += 1
    for res in results:
        if res.status == "ok":
            finish(res)
    return results
