"""Metrics against values worked out by hand, plus brute-force enumeration checks."""

from __future__ import annotations

import math
import random
from itertools import combinations

import numpy as np
import pytest

from vlprm.metrics import (
    bon_at_k,
    bon_choice_probs,
    first_error_f1,
    k_values,
    majority_at_k,
    pass_at_k,
    predicted_first_error,
    process_bench_f1,
    tts_metrics,
    vlprm_rule_bon_at_k,
    weighted_at_k,
)
from vlprm.prm.aggregate import aggregate

approx = pytest.approx

# ------------------------------------------------------------------------------ k_values


@pytest.mark.parametrize(
    "n, ks",
    [(1, [1]), (2, [1, 2]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (0, [])],
)
def test_k_values(n, ks):
    assert k_values(n) == ks


# ------------------------------------------------------------------------------ pass@k


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 1, 0.3),  # k=1: c/n
        (4, 0, 2, 0.0),  # no correct sample
        (4, 4, 1, 1.0),  # all correct
        (4, 1, 4, 1.0),  # k = n: the one correct sample is always in
        (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20
        (4, 2, 3, 1.0),  # n - c = 2 < k: every 3-subset holds a correct one
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == approx(expected)


def test_pass_at_k_large_n_is_stable():
    # C(1000, 500) overflows floats; the product form must not.
    v = pass_at_k(1000, 1, 500)
    assert v == approx(0.5)


def test_pass_at_k_rejects_bad_args():
    for args in [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(*args)


# ------------------------------------------------------------------------------ BoN@k

# scores  0.9  0.5  0.5  0.1
# correct  0    1    0    1
# k=1: mean correctness = 2/4 = 0.5
# k=2: six pairs; the pick is the higher score:
#   {0,1}->0 (0) {0,2}->0 (0) {0,3}->0 (0) {1,2}->tie 1|2 (0.5) {1,3}->1 (1) {2,3}->2 (0)
#   = 1.5 / 6 = 0.25
# k=3: {0,1,2}->0 {0,1,3}->0 {0,2,3}->0 {1,2,3}->tie (0.5)  = 0.5 / 4 = 0.125
# k=4: the 0.9 candidate is wrong -> 0
BON_SCORES = [0.9, 0.5, 0.5, 0.1]
BON_CORRECT = [0, 1, 0, 1]


@pytest.mark.parametrize("k, expected", [(1, 0.5), (2, 0.25), (3, 0.125), (4, 0.0)])
def test_bon_exact_hand_computed(k, expected):
    assert bon_at_k(BON_SCORES, BON_CORRECT, k) == approx(expected)


@pytest.mark.parametrize("k, expected", [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0)])
def test_bon_first_k(k, expected):
    # The first candidate (0.9, wrong) is in every prefix and always wins.
    assert bon_at_k(BON_SCORES, BON_CORRECT, k, subsets="first") == approx(expected)


def test_bon_first_k_tie_is_averaged():
    # First 2 of [0.5 (wrong), 0.5 (correct), 0.9 (correct)]: a tie -> 0.5, not 1.0.
    assert bon_at_k([0.5, 0.5, 0.9], [0, 1, 1], 2, subsets="first") == approx(0.5)
    assert bon_at_k([0.5, 0.5, 0.9], [0, 1, 1], 3, subsets="first") == approx(1.0)


def test_bon_two_tied_one_correct_is_half():
    assert bon_at_k([0.7, 0.7], [1, 0], 2) == approx(0.5)
    assert bon_at_k([0.7, 0.7], [1, 0], 1) == approx(0.5)
    # Binary-ish PRM scores: all tied -> BoN equals mean accuracy at every k.
    for k in (1, 2, 3, 4):
        assert bon_at_k([1.0] * 4, [1, 0, 0, 0], k) == approx(0.25)


def test_bon_no_ties_hand_computed():
    # scores 0.2 0.8 0.5, correct 1 0 1; k=2: {0,1}->1 (0), {0,2}->2 (1), {1,2}->1 (0) = 1/3
    assert bon_at_k([0.2, 0.8, 0.5], [1, 0, 1], 2) == approx(1 / 3)


def test_bon_choice_probs_closed_form():
    # Groups (ascending): 0.1 (m=1, b=0), 0.5 (m=2, b=1), 0.9 (m=1, b=3); k=2, C(4,2)=6.
    # P(max in 0.9) = (C(4,2)-C(3,2))/6 = 3/6; P(max in 0.5) = (C(3,2)-C(1,2))/6 = 3/6,
    # split over 2 -> 1/4 each; P(max is 0.1) = (C(1,2)-0)/6 = 0.
    assert bon_choice_probs(BON_SCORES, 2) == approx([0.5, 0.25, 0.25, 0.0])


def test_bon_missing_scores_rank_last():
    assert bon_at_k([None, 0.1], [1, 0], 2) == approx(0.0)
    assert bon_at_k([float("nan"), 0.1], [1, 0], 2) == approx(0.0)


def _bon_brute(scores, correct, k):
    """Enumerate every k-subset; the pick is uniform among the subset's top-scored."""
    vals = []
    for sub in combinations(range(len(scores)), k):
        top = max(scores[i] for i in sub)
        tied = [i for i in sub if scores[i] == top]
        vals.append(sum(correct[i] for i in tied) / len(tied))
    return sum(vals) / len(vals)


def test_bon_exact_matches_enumeration_on_random_cases():
    rng = random.Random(1234)
    for _ in range(200):
        n = rng.randint(1, 9)
        # Few distinct values so ties are common.
        scores = [rng.choice([0.1, 0.3, 0.3, 0.6, 0.9, rng.random()]) for _ in range(n)]
        correct = [rng.random() < 0.4 for _ in range(n)]
        for k in range(1, n + 1):
            assert bon_at_k(scores, correct, k) == approx(_bon_brute(scores, correct, k), abs=1e-12)


def test_bon_choice_probs_sum_to_one_for_large_n():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=600).astype(float)  # many ties, C(600, 300) ~ 1e179
    p = bon_choice_probs(scores, 300)
    assert p.sum() == approx(1.0)
    assert np.all(p >= 0)


# ------------------------------------------------------------------------------ weighted@k


def test_weighted_hand_computed():
    answers = ["5", "5", "7", "7", None]
    scores = [0.3, 0.3, 0.9, 0.1, 0.99]
    correct = [1, 1, 0, 0, 0]
    # k=5: "5" sums 0.6, "7" sums 1.0 (None is ignored despite 0.99) -> "7", wrong.
    assert weighted_at_k(answers, scores, correct, 5) == approx(0.0)
    # k=2 first: only "5" -> right.
    assert weighted_at_k(answers, scores, correct, 2) == approx(1.0)
    # k=3 first: "5" 0.6 vs "7" 0.9 -> wrong.
    assert weighted_at_k(answers, scores, correct, 3) == approx(0.0)


def test_weighted_tie_is_averaged_even_with_float_rounding():
    assert weighted_at_k(["5", "7"], [0.5, 0.5], [1, 0], 2) == approx(0.5)
    # 0.1 + 0.2 + 0.3 = 0.6000000000000001 vs 0.6: the same sum, a tie.
    assert weighted_at_k(["a", "a", "a", "b"], [0.1, 0.2, 0.3, 0.6], [1, 1, 1, 0], 4) == approx(0.5)


def test_weighted_all_none_is_incorrect():
    assert weighted_at_k([None, None], [0.9, 0.8], [0, 0], 2) == 0.0


# ------------------------------------------------------------------------------ maj@k


def test_majority_hand_computed():
    answers = ["3", "3", "4", None, None, None]
    correct = [1, 1, 0, 0, 0, 0]
    assert majority_at_k(answers, correct, 6) == approx(1.0)  # three Nones do not outvote "3"
    assert majority_at_k(answers, correct, 1) == approx(1.0)
    assert majority_at_k(answers, correct, 4) == approx(1.0)  # 3,3,4,None
    assert majority_at_k(["3", "4"], [1, 0], 2) == approx(0.5)  # tie
    assert majority_at_k(["4", "3", "3"], [0, 1, 1], 2) == approx(0.5)  # first 2 tie
    assert majority_at_k([None, None, None], [0, 0, 0], 3) == 0.0


def test_majority_random_is_exact_when_few_subsets():
    # answers 1 1 2, k=2: {0,1}->"1" (1), {0,2}->tie (0.5), {1,2}->tie (0.5) = 2/3
    assert majority_at_k(["1", "1", "2"], [1, 1, 0], 2, subsets="random", n_resamples=100) == approx(2 / 3)


def _vote_brute(answers, correct, k, weights=None):
    vals = []
    for sub in combinations(range(len(answers)), k):
        tot = {}
        for i in sub:
            if answers[i] is not None:
                tot[answers[i]] = tot.get(answers[i], 0.0) + (1.0 if weights is None else weights[i])
        if not tot:
            vals.append(0.0)
            continue
        best = max(tot.values())
        tied = [a for a, t in tot.items() if math.isclose(t, best)]
        vals.append(np.mean([np.mean([correct[i] for i in sub if answers[i] == a]) for a in tied]))
    return float(np.mean(vals))


def test_random_vote_subsets_approximate_the_full_expectation_and_are_seeded():
    rng = random.Random(7)
    answers = [rng.choice(["a", "b", "c", None]) for _ in range(14)]
    correct = [a == "a" for a in answers]
    scores = [rng.random() for _ in answers]
    k = 5  # C(14, 5) = 2002 > n_resamples: sampled
    exact_maj = _vote_brute(answers, correct, k)
    exact_w = _vote_brute(answers, correct, k, scores)
    maj = majority_at_k(answers, correct, k, subsets="random", n_resamples=1500, seed=3)
    w = weighted_at_k(answers, scores, correct, k, subsets="random", n_resamples=1500, seed=3)
    assert maj == approx(exact_maj, abs=0.04)
    assert w == approx(exact_w, abs=0.04)
    assert maj == majority_at_k(answers, correct, k, subsets="random", n_resamples=1500, seed=3)
    assert maj != majority_at_k(answers, correct, k, subsets="random", n_resamples=50, seed=4)


# ------------------------------------------------------------------------------ tts_metrics


def _problems(score_key=None):
    p1 = dict(answers=["7", "5", "7", "5"], correct=[0, 1, 0, 1], scores=[0.9, 0.5, 0.5, 0.1])
    p2 = dict(answers=["2", "2", "2", "3"], correct=[1, 1, 1, 0], scores=[0.2, 0.3, 0.4, 0.9])
    out = []
    for p in (p1, p2):
        out.append([
            {"answer": a, "correct": bool(c), "score": s if score_key is None else {score_key: s, "neg": -s}}
            for a, c, s in zip(p["answers"], p["correct"], p["scores"])
        ])
    return out


def test_tts_metrics_hand_computed():
    # P1 = the BoN example above; P2: scores .2 .3 .4 .9, correct 1 1 1 0, answers 2 2 2 3.
    # pass@k  P1 (n=4,c=2): 1/2, 5/6, 1          P2 (c=3): 3/4, 1, 1
    # bon@k   P1: 0.5, 0.25, 0                   P2: 3/4, 1/2 (3 of 6 pairs hold the .9), 0
    # maj@k   P1 first k: "7"->0, 7|5 tie->.5, 2-2 tie->.5    P2: 1, 1, 1
    # wtd@k   P1: 0, "7" .9 > "5" .5 -> 0, "7" 1.4 > "5" .6 -> 0
    #         P2: 1, 1, "2" .2+.3+.4 = .9 ties "3" .9 -> 0.5
    res = tts_metrics(_problems())
    assert res["ks"] == [1, 2, 4]
    assert res["pass@k"] == approx({1: 0.625, 2: 11 / 12, 4: 1.0})
    assert res["bon@k"]["score"] == approx({1: 0.625, 2: 0.375, 4: 0.0})
    assert res["maj@k"] == approx({1: 0.5, 2: 0.75, 4: 0.75})
    assert res["weighted@k"]["score"] == approx({1: 0.5, 2: 0.5, 4: 0.25})
    assert res["counts"]["problems"] == 2
    assert res["counts"]["candidates"] == 8
    assert res["counts"]["problems_with_a_correct_candidate"] == 2


def test_tts_metrics_score_dict_gives_one_entry_per_aggregation():
    res = tts_metrics(_problems(score_key="min"))
    assert set(res["bon@k"]) == {"min", "neg"}
    assert res["bon@k"]["min"] == approx({1: 0.625, 2: 0.375, 4: 0.0})
    # "neg" reverses the ranking: P1 picks .1 (right) at k=4; P2 picks .2 (right).
    assert res["bon@k"]["neg"][4] == approx(1.0)


def test_tts_metrics_dict_input_and_k_validation():
    probs = dict(zip(["q1", "q2"], _problems()))
    assert tts_metrics(probs)["pass@k"] == approx({1: 0.625, 2: 11 / 12, 4: 1.0})
    with pytest.raises(ValueError, match="q1"):
        tts_metrics(probs, ks=[8])
    with pytest.raises(ValueError, match="no candidates"):
        tts_metrics({"q": []})


def test_tts_metrics_without_scores():
    probs = [[{"answer": "1", "correct": True}, {"answer": "2", "correct": False}]]
    res = tts_metrics(probs)
    assert res["bon@k"] == {}
    assert res["maj@k"] == approx({1: 1.0, 2: 0.5})


# ------------------------------------------------------------------------------ VL-PRM's own rule


def _authors_pick(cands):
    """The released VL-PRM best-of-N choice, written out as their scan: reward P(+)^0.3 /
    tokens^0.6 where "+" wins (argmax of (+, -) logits: P(+) >= 0.5), else -1; keep the first
    reward above -1 that beats the best so far (strict >); if none, the smallest P(-) (strict <)."""
    best, best_i = -1, -1
    for i, (p, n) in enumerate(cands):
        reward = -1 if p < 0.5 else p ** 0.3 / n ** 0.6
        if reward > best:
            best, best_i = reward, i
    if best_i == -1:
        low = math.inf
        for i, (p, _) in enumerate(cands):
            if 1 - p < low:
                low, best_i = 1 - p, i
    return best_i


def _simulated_problems(n_problems=2000, n=16, seed=0):
    """N=16 candidates per problem; ~half the problems have every candidate judged "-"; some
    P(+) values repeat (coarse PRM outputs), so ties occur."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_problems):
        all_negative = rng.random() < 0.5
        cands, correct = [], []
        for _ in range(n):
            p = rng.uniform(0.0, 0.499) if all_negative else rng.uniform(0.0, 1.0)
            if rng.random() < 0.2:
                p = round(p, 1) if p < 0.45 or p >= 0.5 else 0.4  # coarse values: ties
            cands.append((p, rng.randint(300, 3000)))
            correct.append(rng.random() < 0.4)
        out.append((cands, correct))
    return out


def test_vlprm_rule_first_k_equals_the_authors_scan_on_2000_simulated_problems():
    problems = _simulated_problems()
    assert sum(all(p < 0.5 for p, _ in c) for c, _ in problems) > 800
    differs_from_tie_average = 0
    for cands, correct in problems:
        for k in (1, 2, 4, 8, 16):
            want = float(correct[_authors_pick(cands[:k])])
            assert vlprm_rule_bon_at_k(cands, correct, k, "first") == want
        # Our `vlprm` aggregation gives every "-" candidate -1: BoN then averages the tie.
        old = bon_at_k([aggregate([p], "vlprm", num_tokens=n) for p, n in cands], correct, 16, "first")
        differs_from_tie_average += old != float(correct[_authors_pick(cands)])
    assert differs_from_tie_average > 500


def test_vlprm_rule_exact_equals_enumerating_every_subset():
    for cands, correct in _simulated_problems(n_problems=60, n=16, seed=1):
        for k in (1, 2, 15, 16):
            subs = list(combinations(range(16), k))
            want = np.mean([correct[s[_authors_pick([cands[i] for i in s])]] for s in subs])
            assert vlprm_rule_bon_at_k(cands, correct, k) == approx(want, abs=1e-12)
    for cands, correct in _simulated_problems(n_problems=100, n=8, seed=2):
        for k in range(1, 9):
            subs = list(combinations(range(8), k))
            want = np.mean([correct[s[_authors_pick([cands[i] for i in s])]] for s in subs])
            assert vlprm_rule_bon_at_k(cands, correct, k) == approx(want, abs=1e-12)


def test_vlprm_rule_hand_made_case():
    # All "-": the highest P(+) (candidate 1, correct) wins, not an average over the -1 tie.
    neg = [(0.30, 500), (0.45, 900), (0.20, 400), (0.45, 100)]
    correct = [False, True, False, False]
    assert vlprm_rule_bon_at_k(neg, correct, 4, "first") == 1.0
    # Candidates 1 and 3 tie at .45: the first (1) wins. Exact k=2: 1 is picked in the pairs
    # {0,1} {1,2} {1,3} -> 3 of 6.
    assert vlprm_rule_bon_at_k(neg, correct, 2) == approx(0.5)
    # "+" beats "-"; among "+", the shorter input wins: .6^.3/100^.6 = .054 > .9^.3/1000^.6 = .015.
    mixed = [(0.9, 1000), (0.6, 100), (0.49, 10)]
    assert vlprm_rule_bon_at_k(mixed, [False, True, False], 3, "first") == 1.0
    # P(+) exactly 0.5 counts as "+" (the argmax keeps "+" on a tie of logits).
    assert vlprm_rule_bon_at_k([(0.499, 10), (0.5, 10_000)], [False, True], 2, "first") == 1.0
    # An unscored candidate is never picked over a scored one; StepScores dicts are accepted.
    outcome = [None, {"p_plus": [0.1], "num_tokens": 50}]
    assert vlprm_rule_bon_at_k(outcome, [False, True], 2) == 1.0


def test_tts_metrics_adds_the_vlprm_outcome_row_from_outcome_scores():
    cands = [{"answer": "A", "correct": False, "score": {"last": 0.2}, "outcome": {"p_plus": [0.30], "num_tokens": 500}},
             {"answer": "B", "correct": True, "score": {"last": 0.1}, "outcome": {"p_plus": [0.45], "num_tokens": 900}},
             {"answer": "C", "correct": False, "score": {"last": 0.3}, "outcome": {"p_plus": [0.20], "num_tokens": 400}}]
    res = tts_metrics([cands])
    # Pairs {0,1} and {1,2} pick the correct candidate 1 (highest P(+)); {0,2} picks 0.
    assert res["bon@k"]["vlprm_outcome"] == approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    assert res["bon@k"]["last"] == approx({1: 1 / 3, 2: 0.0, 3: 0.0})  # ranked by "last", 1 never wins
    assert "vlprm_outcome" not in res["weighted@k"]
    assert "vlprm_outcome" not in tts_metrics([[{k: v for k, v in c.items() if k != "outcome"} for c in cands]])["bon@k"]


# ------------------------------------------------------------------------------ VisualProcessBench

# VisualProcessBench labels: 1 correct, -1 incorrect, 0 neutral.
# Sample A (geo):   labels 1 1 -1 0,  scores .9 .4 .3 .1
# Sample B (chart): labels 1 -1 -1,     scores .8 .2 .1
# threshold .5 -> predicted correct: A: T F F (neutral dropped); B: T F F
# pooled labels 1 1 0 1 0 0, preds T F F T F F
#   correct-positive:   TP 2, FN 1, FP 0 -> F1 = 4/5
#   incorrect-positive: TP 3, FP 1, FN 0 -> F1 = 6/7
#   macro = (4/5 + 6/7)/2 = 29/35
# geo: labels 1 1 0, preds T F F -> F1c = 2/3 (TP1 FN1), F1i = 2/3 (TP1 FP1) -> macro 2/3
# chart: perfect -> 1; mean of per-source macros = 5/6
PB_LABELS = [[1, 1, -1, 0], [1, -1, -1]]
PB_SCORES = [[0.9, 0.4, 0.3, 0.1], [0.8, 0.2, 0.1]]
PB_SOURCES = ["geo", "chart"]


def test_process_bench_f1_hand_computed():
    res = process_bench_f1(PB_LABELS, PB_SCORES, 0.5, PB_SOURCES)
    assert res["overall"]["f1_correct"] == approx(4 / 5)
    assert res["overall"]["f1_incorrect"] == approx(6 / 7)
    assert res["overall"]["macro_f1"] == approx(29 / 35)
    assert res["per_source"]["geo"]["macro_f1"] == approx(2 / 3)
    assert res["per_source"]["chart"]["macro_f1"] == approx(1.0)
    assert res["mean_source_macro_f1"] == approx(5 / 6)
    assert res["overall"]["n_steps"] == 6
    assert res["n_neutral_steps"] == 1


def test_process_bench_neutral_steps_are_excluded():
    # Moving the neutral step's score across the threshold must change nothing.
    a = process_bench_f1(PB_LABELS, PB_SCORES, 0.5, PB_SOURCES)
    scores = [[0.9, 0.4, 0.3, 0.99], [0.8, 0.2, 0.1]]
    b = process_bench_f1(PB_LABELS, scores, 0.5, PB_SOURCES)
    assert a["overall"] == b["overall"]
    # ...whereas labelling it correct would count it (score .1 -> a false "incorrect").
    c = process_bench_f1([[1, 1, -1, 1], [1, -1, -1]], PB_SCORES, 0.5, PB_SOURCES)
    assert c["overall"]["macro_f1"] != approx(a["overall"]["macro_f1"])


@pytest.mark.parametrize(
    "threshold, macro",
    [
        (0.35, 1.0),  # .4 becomes "correct": every step right
        (0.5, 29 / 35),
        # everything predicted incorrect: F1c = 0; F1i: TP 3, FP 3 -> 6/9; macro 1/3
        (0.95, 1 / 3),
    ],
)
def test_process_bench_threshold(threshold, macro):
    assert process_bench_f1(PB_LABELS, PB_SCORES, threshold, PB_SOURCES)["overall"]["macro_f1"] == approx(macro)


def test_process_bench_threshold_is_inclusive_and_lengths_checked():
    # score == threshold counts as predicted correct
    res = process_bench_f1([[1, -1]], [[0.5, 0.49]], 0.5)
    assert res["overall"]["macro_f1"] == approx(1.0)
    assert list(res["per_source"]) == ["all"]
    with pytest.raises(ValueError, match="sample 0"):
        process_bench_f1([[1, 0]], [[0.5]], 0.5)


# ------------------------------------------------------------------------------ first error

FE_GOLD = [2, 1, -1, -1, -1]
FE_SCORES = [
    [0.9, 0.8, 0.3, 0.2],  # pred 2 (right)
    [0.9, 0.6, 0.1],  # pred 2, gold 1 (wrong)
    [0.9, 0.7],  # pred -1 (right)
    [0.4, 0.9],  # pred 0 (wrong)
    [0.8, 0.9, 0.55],  # pred -1 (right)
]


def test_first_error_f1_hand_computed():
    # acc_err = 1/2, acc_ok = 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7
    res = first_error_f1(FE_GOLD, FE_SCORES, 0.5)
    assert res["overall"]["acc_erroneous"] == approx(0.5)
    assert res["overall"]["acc_correct"] == approx(2 / 3)
    assert res["overall"]["f1"] == approx(4 / 7)
    assert res["predicted_first_error"] == [2, 2, -1, 0, -1]


def test_first_error_f1_threshold():
    # At .65: sample 2 now predicts 1 (right), sample 5 predicts 2 (wrong):
    # acc_err = 1, acc_ok = 1/3, F1 = 2 * 1/3 / (4/3) = 1/2
    res = first_error_f1(FE_GOLD, FE_SCORES, 0.65)
    assert res["overall"]["acc_erroneous"] == approx(1.0)
    assert res["overall"]["acc_correct"] == approx(1 / 3)
    assert res["overall"]["f1"] == approx(0.5)


def test_first_error_per_source_and_undefined():
    res = first_error_f1(FE_GOLD, FE_SCORES, 0.5, sources=["a", "a", "b", "b", "b"])
    assert res["per_source"]["a"]["acc_erroneous"] == approx(0.5)
    assert res["per_source"]["a"]["f1"] is None  # no correct samples in "a"
    assert res["per_source"]["b"]["acc_correct"] == approx(2 / 3)
    assert predicted_first_error([0.7, 0.5, 0.49]) == 2
    with pytest.raises(ValueError, match="sample 0"):
        first_error_f1([3], [[0.9, 0.9]])
