"""Stage 4: labels are views computed from stored evidence (MC counts, judge verdicts).

A label of a step says whether the solution is correct up to and including that step (the PRM
format's reading), so every step from the first error on is "-". Views:

- ``mc``: first error = first step whose MC ratio is <= threshold (default 0: no continuation
  reached the answer). Steps the method did not probe take their label from that first error
  (before it "+", from it on "-"); a solution with no failing step is all "+".
- ``soft``: the ``mc`` labels plus soft labels: the MC ratio of each probed step; unprobed
  steps get 1.0 before the first error and 0.0 from it on.
- ``judge``: the judge's first incorrect step (none: all "+").
- ``hybrid``: judge finds an error at k: steps before k "+", k "-", the solution cut after k;
  judge says correct and MC finds no failing step: all "+"; judge says correct but MC finds a
  failing step: dropped (``judge_correct_mc_error``); no usable MC evidence then: dropped.
- ``consensus``: kept only where MC's first error and the judge's agree (both none counts).

Perception steps are labelled individually, so the first error may be a perception step:
every record says the kind of its first error step (``error_kind``: perception | reasoning).
Views listed in ``cut_views`` keep only the steps up to the first error (hybrid always does).
Step numbers are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from vlprm.data.schema import Solution, StepEvidence

VIEWS = ("mc", "soft", "judge", "hybrid", "consensus")
PLUS, MINUS = "+", "-"


def mc_first_error(evidence: Sequence[StepEvidence], threshold: float = 0.0) -> int | None:
    """First step (1-based) whose measured MC ratio is <= threshold; None if there is none.

    Only measured steps count: binary search measures the step it names as the first error and
    a success before it, and per-step early stop measures every step up to the first dead one."""
    for i, ev in enumerate(evidence, 1):
        r = ev.mc_ratio
        if r is not None and r <= threshold:
            return i
    return None


def labels_from_first_error(n: int, first_error: int | None) -> list[str]:
    """"+" before the first error, "-" from it on (all "+" when None)."""
    if first_error is None:
        return [PLUS] * n
    return [PLUS] * (first_error - 1) + [MINUS] * (n - first_error + 1)


def soft_from_evidence(evidence: Sequence[StepEvidence], first_error: int | None) -> list[float]:
    """Measured MC ratios; unprobed steps 1.0 before the first error, 0.0 from it on."""
    out = []
    for i, ev in enumerate(evidence, 1):
        r = ev.mc_ratio
        if r is None:
            r = 1.0 if first_error is None or i < first_error else 0.0
        out.append(float(r))
    return out


@dataclass
class Evidence:
    """What is known about one solution: its steps' kinds and the MC / judge outcomes.

    mc_ok / judge_ok are False when that stage failed or was not run (the reason says which).
    """

    solution_id: str
    kinds: list[str]
    mc: list[StepEvidence] | None = None
    mc_reason: str | None = "no_mc"
    judge_first_error: int | None = None
    judge_verdict: str | None = None
    judge_ok: bool = False
    judge_reason: str | None = "no_judge"
    problem_id: str | None = None

    @property
    def mc_ok(self) -> bool:
        return self.mc is not None

    @classmethod
    def from_records(cls, solution: Solution, mc_rec: dict | None, judge_rec: dict | None) -> "Evidence":
        """Evidence from a solution and its mc.jsonl / judge.jsonl records (either may be None)."""
        ev = cls(solution.id, [s.kind for s in solution.steps], problem_id=solution.problem_id)
        if mc_rec is not None:
            if mc_rec.get("status") == "ok":
                steps = [StepEvidence.from_dict(d) for d in mc_rec.get("steps") or []]
                if len(steps) == len(solution.steps):
                    ev.mc, ev.mc_reason = steps, None
                else:
                    ev.mc_reason = "mc_step_mismatch"
            else:
                ev.mc_reason = "mc_failed"
        if judge_rec is not None:
            if judge_rec.get("status") == "ok":
                ev.judge_ok, ev.judge_reason = True, None
                ev.judge_first_error = judge_rec.get("first_error_step")
                ev.judge_verdict = judge_rec.get("verdict")
            else:
                ev.judge_reason = "judge_failed"
        return ev


@dataclass
class Labelled:
    """One solution under one label view (a line of combined.jsonl)."""

    solution_id: str
    view: str
    kept: bool
    reason: str | None = None  # why dropped
    labels: list[str] = field(default_factory=list)
    soft_labels: list[float] | None = None
    num_steps: int = 0  # steps kept (after a cut)
    first_error_step: int | None = None
    error_kind: str | None = None
    mc_first_error: int | None = None
    judge_first_error: int | None = None
    problem_id: str | None = None
    cut: bool = False

    def to_record(self) -> dict:
        return {"id": f"{self.solution_id}::{self.view}", "solution_id": self.solution_id,
                "problem_id": self.problem_id, "view": self.view, "kept": self.kept, "reason": self.reason,
                "labels": self.labels, "soft_labels": self.soft_labels, "num_steps": self.num_steps,
                "first_error_step": self.first_error_step, "error_kind": self.error_kind,
                "mc_first_error": self.mc_first_error, "judge_first_error": self.judge_first_error,
                "cut": self.cut}


def _kind(kinds: Sequence[str], first_error: int | None) -> str | None:
    if first_error is None:
        return None
    return "perception" if kinds[first_error - 1] == "perception" else "reasoning"


def label(ev: Evidence, view: str, *, threshold: float = 0.0, cut_views: Sequence[str] = ("hybrid", "consensus")
          ) -> Labelled:
    """Labels of one solution under one view (see the module docstring for the rules)."""
    if view not in VIEWS:
        raise ValueError(f"unknown label view {view!r}; choose from {', '.join(VIEWS)}")
    n = len(ev.kinds)
    mc_fe = mc_first_error(ev.mc, threshold) if ev.mc_ok else None
    out = Labelled(ev.solution_id, view, kept=False, problem_id=ev.problem_id,
                   mc_first_error=mc_fe, judge_first_error=ev.judge_first_error if ev.judge_ok else None)

    def drop(reason: str) -> Labelled:
        out.kept, out.reason = False, reason
        return out

    if view in ("mc", "soft", "consensus") and not ev.mc_ok:
        return drop(ev.mc_reason or "no_mc")
    if view in ("judge", "hybrid", "consensus") and not ev.judge_ok:
        return drop(ev.judge_reason or "no_judge")

    if view in ("mc", "soft"):
        first = mc_fe
    elif view == "judge":
        first = ev.judge_first_error
    elif view == "hybrid":
        if ev.judge_first_error is not None:
            first = ev.judge_first_error
        elif not ev.mc_ok:
            return drop(ev.mc_reason or "no_mc")
        elif mc_fe is not None:
            return drop("judge_correct_mc_error")
        else:
            first = None
    else:  # consensus
        if mc_fe != ev.judge_first_error:
            return drop("mc_judge_disagree")
        first = mc_fe

    labels = labels_from_first_error(n, first)
    soft = soft_from_evidence(ev.mc, first) if view == "soft" else None
    keep_n = n
    if (view == "hybrid" or view in cut_views) and first is not None:
        keep_n = first
        out.cut = first < n
    out.kept = True
    out.labels = labels[:keep_n]
    out.soft_labels = soft[:keep_n] if soft is not None else None
    out.num_steps = keep_n
    out.first_error_step = first
    out.error_kind = _kind(ev.kinds, first)
    return out


def combine(solutions: Sequence[Solution], mc_records: dict[str, dict], judge_records: dict[str, dict],
            views: Sequence[str] = VIEWS, *, threshold: float = 0.0,
            cut_views: Sequence[str] = ("hybrid", "consensus")) -> list[dict]:
    """combined.jsonl records for every solution and view, sorted by (solution id, view order)."""
    out = []
    for sol in sorted(solutions, key=lambda s: s.id):
        ev = Evidence.from_records(sol, mc_records.get(sol.id), judge_records.get(sol.id))
        for view in views:
            out.append(label(ev, view, threshold=threshold, cut_views=cut_views).to_record())
    return out
