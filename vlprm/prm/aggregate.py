"""Turn a solution's per-step P(+) into one score.

Methods (all take the per-step P(+) list of one solution, in step order):

* ``mean``, ``min``, ``last``, ``product``: the usual step aggregations.
* ``outcome``: the PRM used as an outcome reward model ("PRM as ORM"): the P(+) of the whole
  solution scored as ONE step. It needs scores from a scorer run with ``mode="outcome"``
  (a single step); asking for it on several step scores is an error, never a silent "last".
* ``vlprm``: the reward shape of the released VL-PRM search code::

      score = P(+)^a / length^b      if P(+) >= threshold ("+" is the argmax label)
      score = negative_reward        otherwise ("-" is the argmax label)

  where P(+) is the last step's P(+). ``length`` is what the denominator counts:
  ``"tokens"`` (default, as released: the number of PRM input tokens the scored conversation
  has, i.e. ``StepScores.num_tokens``) or ``"steps"`` (the number of steps). Defaults a=0.3,
  b=0.6, negative_reward=-1, threshold=0.5 are the released values.

A sample without scores (a scoring error) aggregates to None, which ranks below every score.

The VL-PRM authors' CHOICE among candidates (`vlprm_rule_key`, `vlprm_rule_pick`) is more than
the ``vlprm`` value: a candidate where "+" wins always beats one where "-" wins, "+" candidates
rank by the reward above, and when every candidate is "-" the one with the highest P(+) is
picked (not a tie among the -1s); among equals the first candidate wins (the authors scan
candidates in order with a strict ``>``). Their best-of-N scores each whole solution as ONE
step (scorer ``mode="outcome"``) and counts the PRM input tokens of that one-step conversation;
their greedy step search scores each candidate next step after the chosen steps so far. The
rule is a metric row (`vlprm.metrics.vlprm_rule_bon_at_k`) and a greedy choice
(``SearchConfig.choice="vlprm_rule"``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

AGGREGATIONS = ("mean", "min", "last", "product", "outcome", "vlprm")
# The aggregations computable from a one-pass step scoring (outcome needs its own scoring run).
STEP_AGGREGATIONS = ("mean", "min", "last", "product")


def _scores_and_tokens(step_scores: Any) -> tuple[list[float] | None, int | None]:
    """(P(+) list, token count) of a StepScores-like object, a dict, or a plain list."""
    if step_scores is None:
        return None, None
    if isinstance(step_scores, Mapping):
        return step_scores.get("p_plus"), step_scores.get("num_tokens")
    if hasattr(step_scores, "p_plus"):
        return step_scores.p_plus, getattr(step_scores, "num_tokens", None)
    return list(step_scores), None


def aggregate(step_scores: Any, method: str = "last", *, a: float = 0.3, b: float = 0.6,
              length: str = "tokens", negative_reward: float = -1.0, threshold: float = 0.5,
              num_tokens: int | None = None) -> float | None:
    """One solution's score from its per-step P(+) by `method` (see the module docstring).

    step_scores: a `StepScores`, its dict form, or a plain sequence of floats. Returns None when
    there are no scores (the sample failed to score). `num_tokens` overrides the token count
    used by ``vlprm`` with ``length="tokens"`` (needed when step_scores is a plain list).
    """
    scores, tokens = _scores_and_tokens(step_scores)
    if scores is None:
        return None
    scores = [float(s) for s in scores]
    if not scores:
        raise ValueError("aggregate: empty step score list")
    if any(math.isnan(s) for s in scores):
        return None
    if method == "mean":
        return sum(scores) / len(scores)
    if method == "min":
        return min(scores)
    if method == "last":
        return scores[-1]
    if method == "product":
        return math.prod(scores)
    if method == "outcome":
        if len(scores) != 1:
            raise ValueError(f"aggregate 'outcome' needs the whole solution scored as one step "
                             f"(scorer mode='outcome'); got {len(scores)} step scores")
        return scores[0]
    if method == "vlprm":
        if length == "steps":
            n = len(scores)
        elif length == "tokens":
            n = num_tokens if num_tokens is not None else tokens
        else:
            raise ValueError(f"aggregate 'vlprm': length must be 'tokens' or 'steps', got {length!r}")
        return vlprm_reward(scores[-1], n, a=a, b=b, negative_reward=negative_reward, threshold=threshold)
    raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")


def vlprm_reward(p_plus: float, length: int | None, *, a: float = 0.3, b: float = 0.6,
                 negative_reward: float = -1.0, threshold: float = 0.5) -> float:
    """The released VL-PRM reward of one scored conversation: P(+)^a / length^b when "+" wins
    (P(+) >= threshold: the authors' argmax keeps "+" on a tie), else negative_reward.

    length is the PRM input token count of the conversation whose last label was read."""
    if p_plus < threshold:
        return float(negative_reward)
    if not length:
        raise ValueError("the VL-PRM reward needs the PRM input token count of the scored conversation "
                         "(StepScores.num_tokens, or num_tokens=), or use length='steps'")
    return p_plus ** a / length ** b


def _p_and_tokens(scored: Any) -> tuple[float | None, int | None]:
    """(P(+) of the last label, input tokens) of a StepScores, its dict, or a (p, tokens) pair."""
    if isinstance(scored, tuple):
        p, tokens = scored
    else:
        scores, tokens = _scores_and_tokens(scored)
        p = scores[-1] if isinstance(scores, (list, tuple)) and scores else scores
        if isinstance(p, (list, tuple)):  # an empty list: nothing was scored
            p = None
    return (None if p is None or math.isnan(float(p)) else float(p)), tokens


def vlprm_rule_key(scored: Any, *, a: float = 0.3, b: float = 0.6, threshold: float = 0.5) -> tuple[int, float]:
    """Sort key of one candidate under the VL-PRM authors' choice rule (higher is better).

    scored: a `StepScores` (or its dict) whose LAST P(+) and num_tokens are the candidate's, or a
    (p_plus, num_tokens) pair. Tier 2: "+" wins, ranked by `vlprm_reward`; tier 1: "-" wins,
    ranked by P(+) (the all-negative fallback); tier 0: not scored (never picked over a score).
    """
    p, n = _p_and_tokens(scored)
    if p is None:
        return (0, 0.0)
    if p < threshold:
        return (1, p)
    return (2, vlprm_reward(p, n, a=a, b=b, threshold=threshold))


def vlprm_rule_pick(candidates: Sequence[Any], **params) -> int | None:
    """Index of the candidate the VL-PRM authors' rule picks: the highest `vlprm_rule_key`, the
    first one among equals. None when there are no candidates."""
    if not candidates:
        return None
    keys = [vlprm_rule_key(c, **params) for c in candidates]
    return max(range(len(keys)), key=lambda i: (keys[i], -i))


def aggregate_all(step_scores: Any, methods: Sequence[str] = STEP_AGGREGATIONS,
                  **params) -> dict[str, float | None]:
    """{method: score} for several methods (the candidate "score" dict `vlprm.metrics` takes)."""
    return {m: aggregate(step_scores, m, **params) for m in methods}


__all__ = ["AGGREGATIONS", "STEP_AGGREGATIONS", "aggregate", "aggregate_all", "vlprm_reward", "vlprm_rule_key",
           "vlprm_rule_pick"]
