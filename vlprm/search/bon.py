"""Sampling-based selection: pick one of N scored candidates (best-of-N, weighted best-of-N,
majority vote), for one candidate set or for every k = 1, 2, 4, ... N from the same set.

These return the index of the pick, for writing the chosen solution of a run. Accuracy
metrics (pass@k, BoN@k with its exact expectation over subsets, weighted@k, maj@k) live in
`vlprm.metrics` (`tts_metrics`); the conventions here are the same:

* a candidate without a score (None / NaN) ranks below every scored one and adds nothing to
  its answer's weight;
* an answer of None never wins a vote unless all answers are None;
* ties (top score, vote total) are broken by a seeded uniform choice among the tied, never
  toward "whichever came first" and never toward the correct one.

`candidates` (for `select_for_ks`) are dicts as `vlprm.metrics.tts_metrics` takes them:
"answer" (normalized, or None) and "score" (a float, or {aggregation: float}).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any, Mapping, Sequence

METHODS = ("best", "weighted", "majority")


def _value(score: Any, method: str | None) -> float:
    if isinstance(score, Mapping):
        if method is None:
            raise ValueError(f"scores are dicts {sorted(score)}: name the aggregation to use (method=)")
        score = score.get(method)
    if score is None:
        return -math.inf
    x = float(score)
    return -math.inf if math.isnan(x) else x


def _pick(tied: Sequence[Any], seed: int | None) -> Any:
    return tied[0] if len(tied) == 1 else random.Random(seed).choice(list(tied))


def select_best(scores: Sequence[Any], answers: Sequence[Any] | None = None, method: str | None = None,
                *, seed: int | None = 0) -> int | None:
    """Best-of-N: index of the top-scored candidate (scores are floats or {aggregation: float},
    `method` names the aggregation). answers is unused (kept for a uniform signature). None
    when there are no candidates."""
    if not scores:
        return None
    vals = [_value(s, method) for s in scores]
    top = max(vals)
    return _pick([i for i, v in enumerate(vals) if v == top], seed)


def select_weighted(scores: Sequence[Any], answers: Sequence[Any], method: str | None = None,
                    *, seed: int | None = 0) -> int | None:
    """Weighted best-of-N: the answer whose candidates' scores sum highest; returns the index of
    that answer's top-scored candidate."""
    if len(scores) != len(answers):
        raise ValueError(f"{len(scores)} scores but {len(answers)} answers")
    if not answers:
        return None
    if all(a is None for a in answers):
        return select_best(scores, method=method, seed=seed)
    vals = [_value(s, method) for s in scores]
    totals: dict[Any, float] = defaultdict(float)
    for a, v in zip(answers, vals):
        if a is not None:
            totals[a] += 0.0 if math.isinf(v) else v
    best = max(totals.values())
    winner = _pick([a for a, t in totals.items() if math.isclose(t, best, rel_tol=1e-9, abs_tol=1e-12)], seed)
    members = [i for i, a in enumerate(answers) if a == winner]
    top = max(vals[i] for i in members)
    return _pick([i for i in members if vals[i] == top], seed)


def select_majority(answers: Sequence[Any], *, seed: int | None = 0) -> int | None:
    """Majority vote: index of the first candidate giving the most frequent (non-None) answer."""
    if not answers:
        return None
    counts: dict[Any, int] = defaultdict(int)
    for a in answers:
        if a is not None:
            counts[a] += 1
    if not counts:
        return 0
    most = max(counts.values())
    winner = _pick([a for a, c in counts.items() if c == most], seed)
    return answers.index(winner)


def select_for_ks(candidates: Sequence[Mapping[str, Any]], ks: Sequence[int] | None = None,
                  aggregations: Sequence[str] | None = None, *, seed: int = 0) -> dict[str, Any]:
    """The pick of every method for every k, from the first k candidates of ONE sampled set.

    Returns {"ks": [...], "best": {agg: {k: index}}, "weighted": {agg: {k: index}},
    "majority": {k: index}}. aggregations default to the keys of the first dict score ("score"
    for plain float scores); with no scores only majority is filled.
    """
    from vlprm.metrics import k_values

    n = len(candidates)
    ks = list(ks) if ks is not None else k_values(n)
    if any(not 1 <= k <= n for k in ks):
        raise ValueError(f"every k must be in 1..{n} (the number of candidates), got {ks}")
    answers = [c.get("answer") for c in candidates]
    scores = [c.get("score") for c in candidates]
    first = next((s for s in scores if s is not None), None)
    if aggregations is None:
        aggregations = list(first) if isinstance(first, Mapping) else (["score"] if first is not None else [])
    plain = not isinstance(first, Mapping)
    out: dict[str, Any] = {"ks": ks, "best": {}, "weighted": {}, "majority": {}}
    for k in ks:
        out["majority"][k] = select_majority(answers[:k], seed=seed)
        for agg in aggregations:
            method = None if plain else agg
            out["best"].setdefault(agg, {})[k] = select_best(scores[:k], method=method, seed=seed)
            out["weighted"].setdefault(agg, {})[k] = select_weighted(scores[:k], answers[:k], method=method, seed=seed)
    return out


__all__ = ["METHODS", "select_best", "select_weighted", "select_majority", "select_for_ks"]
