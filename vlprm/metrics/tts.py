"""Test-time-scaling metrics: pass@k, BoN@k, weighted@k, maj@k.

Sample once, evaluate every k: every metric here is computed for every k in 1, 2, 4, ... N
(`k_values`) from ONE set of N scored candidates per problem.

Definitions (per problem; `tts_metrics` averages over problems):

* pass@k: the unbiased estimator 1 - C(N-c, k) / C(N, k) (Chen et al., 2021), c = correct.
* BoN@k: expected correctness of the top-scored candidate of a k-subset. Default
  ``subsets="exact"``: the exact expectation over all C(N, k) subsets, in closed form (below).
  ``subsets="first"``: the first k candidates only (the common practice; noisier).
  Ties: the pick is uniform among the tied top-scored candidates in the subset, so a tie
  between a correct and a wrong candidate is worth 0.5. A tie is never resolved as
  "correct if any tied candidate is correct", which inflates BoN for PRMs with coarse scores.
* weighted@k: per subset, sum the scores of the candidates giving each (normalized) answer
  and pick the answer with the largest sum; tied answers are averaged.
* maj@k: the most frequent answer in the subset; tied answers are averaged.
  For both, an answer of None never wins unless all answers are None (then: incorrect).
  ``subsets="first"`` (default) uses the first k; ``subsets="random"`` averages over
  `n_resamples` seeded random k-subsets (all subsets, exactly, when there are no more than
  n_resamples of them). The exact expectation over all subsets has no cheap closed form
  for voting, unlike BoN, hence sampling.

* bon@k[vlprm_outcome]: best-of-k by the VL-PRM authors' own test-time rule
  (`vlprm.prm.aggregate.vlprm_rule_key`): each candidate is the whole solution scored as ONE
  step (candidate "outcome": {"p_plus", "num_tokens"} from a scorer in ``mode="outcome"``);
  reward P(+)^0.3 / tokens^0.6 where "+" wins, else -1; when every candidate in the subset is
  -1, the highest P(+) is picked; among equals the first candidate (the authors' scan order),
  never a tie average. `vlprm_rule_bon_at_k`, same subset modes as BoN@k.

Exact BoN in closed form: group candidates by score; for a group of m tied candidates with
b candidates scored strictly below it, the subset's maximum lies in the group with
probability (C(m + b, k) - C(b, k)) / C(N, k), and then the pick is uniform over the group's
members in the subset, which by symmetry has expected correctness (correct in group) / m.
Without ties this is the familiar "candidate i is the max with probability C(b_i, k-1) / C(N, k)".

"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# The bon@k row of the VL-PRM authors' rule on one-step (outcome) scores.
VLPRM_OUTCOME_ROW = "vlprm_outcome"

# --------------------------------------------------------------------------- k and pass@k


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to n, plus n itself when n is not a power of two. [] for n < 1."""
    ks = []
    k = 1
    while k <= n:
        ks.append(k)
        k *= 2
    if n >= 1 and ks[-1] != n:
        ks.append(n)
    return ks


def _check_k(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of candidates n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
    """
    _check_k(n, k)
    if not 0 <= c <= n:
        raise ValueError(f"c={c} correct must be between 0 and n={n}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# --------------------------------------------------------------------------- best-of-N


def _clean_scores(scores: Sequence[float | None]) -> np.ndarray:
    # A candidate without a score (None / NaN) is never preferred: it ranks below all others.
    out = np.array([-math.inf if s is None else float(s) for s in scores], dtype=float)
    out[np.isnan(out)] = -math.inf
    return out


def bon_choice_probs(scores: Sequence[float | None], k: int, subsets: str = "exact") -> np.ndarray:
    """Probability that each candidate is the one best-of-k picks.

    subsets="exact": over a uniformly random k-subset (closed form, see the module docstring);
    subsets="first": among the first k candidates. Either way a tie at the top is broken
    uniformly at random. The probabilities sum to 1.
    """
    s = _clean_scores(scores)
    n = len(s)
    _check_k(n, k)
    probs = np.zeros(n)
    if subsets == "first":
        top = s[:k].max()
        tied = np.flatnonzero(s[:k] == top)
        probs[tied] = 1.0 / len(tied)
        return probs
    if subsets != "exact":
        raise ValueError(f"subsets must be 'exact' or 'first', got {subsets!r}")
    total = math.comb(n, k)
    values, counts = np.unique(s, return_counts=True)  # ascending
    below = 0
    for v, m in zip(values, counts):
        m = int(m)
        # Python ints keep the binomials exact; int / int rounds once, even past 1e308.
        p_group = (math.comb(below + m, k) - math.comb(below, k)) / total
        probs[s == v] = p_group / m
        below += m
    return probs


def bon_at_k(scores: Sequence[float | None], correct: Sequence[bool], k: int, subsets: str = "exact") -> float:
    """Best-of-k accuracy for one problem: expected correctness of the top-scored candidate
    of a k-subset (see `bon_choice_probs` for the subset modes and tie rule)."""
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} correctness flags")
    probs = bon_choice_probs(scores, k, subsets)
    return float(np.dot(probs, np.asarray(correct, dtype=float)))


def first_max_choice_probs(keys: Sequence[Any], k: int, subsets: str = "exact") -> np.ndarray:
    """Probability that each candidate is picked when the pick is the largest key, the FIRST
    candidate (lowest index) among equals: a strict order, so over a uniformly random k-subset
    candidate i is picked with probability C(below_i, k-1) / C(N, k), below_i = candidates ranked
    below it. subsets="first": among the first k candidates."""
    n = len(keys)
    _check_k(n, k)
    order = sorted(range(n), key=lambda i: (keys[i], -i))  # ascending rank
    probs = np.zeros(n)
    if subsets == "first":
        probs[max(range(k), key=lambda i: (keys[i], -i))] = 1.0
        return probs
    if subsets != "exact":
        raise ValueError(f"subsets must be 'exact' or 'first', got {subsets!r}")
    total = math.comb(n, k)
    for below, i in enumerate(order):
        probs[i] = math.comb(below, k - 1) / total
    return probs


def vlprm_rule_bon_at_k(outcomes: Sequence[Any], correct: Sequence[bool], k: int, subsets: str = "exact",
                        **rule) -> float:
    """Best-of-k accuracy for one problem under the VL-PRM authors' rule (module docstring).

    outcomes[i]: candidate i scored as one step, a `StepScores` / its dict ({"p_plus": [p] or p,
    "num_tokens": n}) or a (p_plus, num_tokens) pair; None = not scored (never picked over a
    scored one). rule: a, b, threshold of `vlprm.prm.aggregate.vlprm_rule_key`.
    """
    from vlprm.prm.aggregate import vlprm_rule_key

    if len(outcomes) != len(correct):
        raise ValueError(f"{len(outcomes)} outcome scores but {len(correct)} correctness flags")
    keys = [vlprm_rule_key(o, **rule) if o is not None else (0, 0.0) for o in outcomes]
    probs = first_max_choice_probs(keys, k, subsets)
    return float(np.dot(probs, np.asarray(correct, dtype=float)))


# --------------------------------------------------------------------------- voting


def _vote(indices: Iterable[int], answers: Sequence[Any], correct: np.ndarray, weights: np.ndarray | None) -> float:
    """Expected correctness of the answer with the largest total weight (count if None)."""
    totals: dict[Any, float] = defaultdict(float)
    members: dict[Any, list[int]] = defaultdict(list)
    for i in indices:
        if answers[i] is None:
            continue
        totals[answers[i]] += 1.0 if weights is None else weights[i]
        members[answers[i]].append(i)
    if not totals:
        return 0.0  # every answer is None: nothing to vote for
    best = max(totals.values())
    # Float sums of the same scores in another order can differ in the last bits.
    tied = [a for a, t in totals.items() if math.isclose(t, best, rel_tol=1e-9, abs_tol=1e-12)]
    # An answer's correctness is its candidates' (they agree when answers are normalized).
    return float(np.mean([correct[members[a]].mean() for a in tied]))


def _subsets(n: int, k: int, subsets: str, n_resamples: int, seed: int | Sequence[int]) -> Iterable[Sequence[int]]:
    if subsets == "first" or k == n:
        return [range(k)]
    if subsets != "random":
        raise ValueError(f"subsets must be 'first' or 'random', got {subsets!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if math.comb(n, k) <= n_resamples:
        return list(combinations(range(n), k))  # few enough: the exact expectation
    rng = np.random.default_rng(seed)
    return [rng.choice(n, size=k, replace=False) for _ in range(n_resamples)]


def weighted_at_k(
    answers: Sequence[Any],
    scores: Sequence[float | None],
    correct: Sequence[bool],
    k: int,
    subsets: str = "first",
    n_resamples: int = 100,
    seed: int | Sequence[int] = 0,
) -> float:
    """Weighted best-of-k for one problem: the answer whose candidates' scores sum highest.

    answers are normalized answers (None = no answer; never wins unless all are None, which
    counts as incorrect). Tied answers are averaged. subsets: "first" (first k, default)
    or "random" (mean over n_resamples seeded k-subsets; exact when C(N, k) <= n_resamples).
    A missing (None / NaN) score adds nothing to its answer.
    """
    n = len(answers)
    if not (len(scores) == len(correct) == n):
        raise ValueError(f"lengths differ: {n} answers, {len(scores)} scores, {len(correct)} flags")
    _check_k(n, k)
    w = _clean_scores(scores)
    w[np.isinf(w) & (w < 0)] = 0.0
    c = np.asarray(correct, dtype=float)
    subs = _subsets(n, k, subsets, n_resamples, seed)
    return float(np.mean([_vote(sub, answers, c, w) for sub in subs]))


def majority_at_k(
    answers: Sequence[Any],
    correct: Sequence[bool],
    k: int,
    subsets: str = "first",
    n_resamples: int = 100,
    seed: int | Sequence[int] = 0,
) -> float:
    """Majority vote over k candidates for one problem; same conventions as `weighted_at_k`."""
    n = len(answers)
    if len(correct) != n:
        raise ValueError(f"lengths differ: {n} answers, {len(correct)} flags")
    _check_k(n, k)
    c = np.asarray(correct, dtype=float)
    subs = _subsets(n, k, subsets, n_resamples, seed)
    return float(np.mean([_vote(sub, answers, c, None) for sub in subs]))


# --------------------------------------------------------------------------- all of them


def _score_dicts(cands: Sequence[Mapping[str, Any]], where: str) -> dict[str, list[float | None]] | None:
    """Scores per aggregation: {"score": [...]} for plain floats, {agg: [...]} for dicts."""
    if all(c.get("score") is None for c in cands):
        return None
    first = next(c["score"] for c in cands if c.get("score") is not None)
    if isinstance(first, Mapping):
        aggs = list(first)
        out: dict[str, list[float | None]] = {a: [] for a in aggs}
        for j, c in enumerate(cands):
            sc = c.get("score")
            if sc is None:  # unscored candidate: ranks last under every aggregation
                for a in aggs:
                    out[a].append(None)
                continue
            if not isinstance(sc, Mapping) or set(sc) != set(aggs):
                raise ValueError(f"{where}, candidate {j}: score keys {sorted(sc) if isinstance(sc, Mapping) else sc!r} differ from {sorted(aggs)}")
            for a in aggs:
                out[a].append(sc[a])
        return out
    for j, c in enumerate(cands):
        if isinstance(c.get("score"), Mapping):
            raise ValueError(f"{where}, candidate {j}: a dict score among plain scores")
    return {"score": [c.get("score") for c in cands]}


def tts_metrics(
    candidates_per_problem: Sequence[Sequence[Mapping[str, Any]]] | Mapping[str, Sequence[Mapping[str, Any]]],
    ks: Sequence[int] | None = None,
    *,
    bon_subsets: str = "exact",
    vote_subsets: str = "first",
    n_resamples: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """pass@k, BoN@k, weighted@k and maj@k for every k, averaged over problems.

    candidates_per_problem: a list (or {problem_id: list}) of candidate lists; a candidate
    is a dict with "answer" (normalized str or None), "correct" (bool) and "score" (a float,
    or {aggregation: float} such as {"min": .., "last": ..}; may be absent, then only pass@k
    and maj@k are computed). A candidate's optional "outcome" (the solution scored as one step:
    {"p_plus", "num_tokens"}) adds the row bon@k[vlprm_outcome] (`vlprm_rule_bon_at_k`) for
    problems whose candidates carry it. ks defaults to `k_values` of the smallest candidate count; a k
    larger than some problem's count is an error naming that problem.

    Random vote subsets are seeded from (seed, problem id or index, k), so a problem's
    numbers do not depend on which other problems are in the run.

    Returns {"ks", "pass@k": {k: v}, "maj@k": {k: v}, "bon@k": {agg: {k: v}},
    "weighted@k": {agg: {k: v}}, "counts": {...}, "settings": {...}}.
    """
    if isinstance(candidates_per_problem, Mapping):
        items = [(str(pid), cands) for pid, cands in candidates_per_problem.items()]
    else:
        items = [(f"problem {i}", cands) for i, cands in enumerate(candidates_per_problem)]
    if not items:
        raise ValueError("tts_metrics: no problems")
    sizes = [len(c) for _, c in items]
    for (key, cands) in items:
        if not cands:
            raise ValueError(f"tts_metrics: {key} has no candidates")
    ks = list(ks) if ks is not None else k_values(min(sizes))
    for (key, cands) in items:
        too_big = [k for k in ks if k > len(cands)]
        if too_big:
            raise ValueError(f"tts_metrics: {key} has {len(cands)} candidates, fewer than k={too_big[0]}; "
                             "pass ks no larger than the smallest candidate count")

    per_k = lambda: {k: [] for k in ks}  # noqa: E731
    pass_k, maj_k = per_k(), per_k()
    bon_k: dict[str, dict[int, list[float]]] = {}
    wtd_k: dict[str, dict[int, list[float]]] = {}
    n_none = n_oracle = 0
    for idx, (key, cands) in enumerate(items):
        answers = [c.get("answer") for c in cands]
        correct = [bool(c.get("correct")) for c in cands]
        n, n_correct = len(cands), sum(correct)
        n_none += sum(a is None for a in answers)
        n_oracle += n_correct > 0
        scores = _score_dicts(cands, key)
        pid_seed = zlib.crc32(key.encode()) if isinstance(candidates_per_problem, Mapping) else idx
        outcomes = [c.get("outcome") for c in cands]
        if any(o is not None for o in outcomes):
            for k in ks:
                bon_k.setdefault(VLPRM_OUTCOME_ROW, per_k())[k].append(
                    vlprm_rule_bon_at_k(outcomes, correct, k, bon_subsets))
        for k in ks:
            pass_k[k].append(pass_at_k(n, n_correct, k))
            maj_k[k].append(majority_at_k(answers, correct, k, vote_subsets, n_resamples, (seed, pid_seed, k)))
            for agg, sc in (scores or {}).items():
                bon_k.setdefault(agg, per_k())[k].append(bon_at_k(sc, correct, k, bon_subsets))
                wtd_k.setdefault(agg, per_k())[k].append(
                    weighted_at_k(answers, sc, correct, k, vote_subsets, n_resamples, (seed, pid_seed, k)))

    mean = lambda d: {k: float(np.mean(v)) for k, v in d.items() if v}  # noqa: E731
    return {
        "ks": ks,
        "pass@k": mean(pass_k),
        "maj@k": mean(maj_k),
        "bon@k": {agg: mean(d) for agg, d in bon_k.items()},
        "weighted@k": {agg: mean(d) for agg, d in wtd_k.items()},
        "counts": {
            "problems": len(items),
            "candidates": sum(sizes),
            "min_candidates": min(sizes),
            "max_candidates": max(sizes),
            "none_answers": n_none,
            "problems_with_a_correct_candidate": n_oracle,
            # bon@k per aggregation averages over problems that had scores.
            "scored_problems": {agg: len(d[ks[0]]) for agg, d in bon_k.items()} if ks else {},
        },
        "settings": {"bon_subsets": bon_subsets, "vote_subsets": vote_subsets,
                     "n_resamples": n_resamples, "seed": seed},
    }


__all__ = [
    "VLPRM_OUTCOME_ROW", "k_values", "pass_at_k", "bon_choice_probs", "bon_at_k", "first_max_choice_probs",
    "vlprm_rule_bon_at_k", "weighted_at_k", "majority_at_k", "tts_metrics",
]
