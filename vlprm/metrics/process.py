"""Step-error-detection metrics.

`process_bench_f1` (VisualProcessBench: F1 on correct and on incorrect steps, macro mean, per
data source) and `first_error_f1` (ProcessBench: accuracy at finding the first wrong step on
erroneous samples, at finding none on correct samples, and their harmonic mean).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

def _f1(tp: int, fp: int, fn: int) -> float:
    # No positives predicted or present: 0, as sklearn's zero_division=0.
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def _step_f1_block(labels: list[int], preds: list[bool]) -> dict[str, Any]:
    """F1 on correct steps, on incorrect steps, and their mean, over non-neutral steps."""
    tp_c = fp_c = fn_c = 0  # positive class: correct step
    tp_i = fp_i = fn_i = 0  # positive class: incorrect step
    for y, p in zip(labels, preds):
        if y == 1:
            tp_c += p
            fn_c += not p
            fp_i += not p
        else:
            fp_c += p
            tp_i += not p
            fn_i += p
    f1_c, f1_i = _f1(tp_c, fp_c, fn_c), _f1(tp_i, fp_i, fn_i)
    return {
        "f1_correct": f1_c,
        "f1_incorrect": f1_i,
        "macro_f1": (f1_c + f1_i) / 2,
        "n_steps": len(labels),
        "n_correct_steps": sum(1 for y in labels if y == 1),
        "n_incorrect_steps": sum(1 for y in labels if y == 0),
    }


def _norm_label(y: Any, where: str) -> int:
    """VisualProcessBench labels (1 correct, -1 incorrect, 0 or None neutral) -> the internal
    codes used below (1 correct, 0 incorrect, -1 neutral). Booleans mean correct/incorrect."""
    if isinstance(y, bool):
        return int(y)
    if y is None or y == 0:
        return -1
    if y == 1:
        return 1
    if y == -1:
        return 0
    raise ValueError(f"{where}: step label {y!r} is not 1 (correct), -1 (incorrect) or 0 (neutral)")


def _sources_for(n: int, sources: Sequence[str] | None) -> list[str]:
    if sources is None:
        return ["all"] * n
    if len(sources) != n:
        raise ValueError(f"{len(sources)} sources for {n} samples")
    return [str(s) for s in sources]


def process_bench_f1(
    step_labels: Sequence[Sequence[int | None]],
    step_scores: Sequence[Sequence[float]],
    threshold: float = 0.5,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """VisualProcessBench step-level F1.

    step_labels[i][j] is the gold label of step j of sample i in VisualProcessBench's
    `process_correctness` convention: 1 correct, -1 incorrect, 0 (or None) neutral; neutral
    steps are left out of every count. A step is predicted
    correct iff its score >= threshold. Reports F1 with "correct" as the positive class,
    F1 with "incorrect" as the positive class, and macro_f1 = their mean; "overall" pools all
    steps of all samples, "per_source" splits by sources[i] (data source), and
    "mean_source_macro_f1" is the unweighted mean of the per-source macro F1s.
    """
    if len(step_labels) != len(step_scores):
        raise ValueError(f"{len(step_labels)} label lists but {len(step_scores)} score lists")
    srcs = _sources_for(len(step_labels), sources)
    pooled_y: list[int] = []
    pooled_p: list[bool] = []
    by_src: dict[str, tuple[list[int], list[bool]]] = defaultdict(lambda: ([], []))
    n_neutral = 0
    for i, (labels, scores) in enumerate(zip(step_labels, step_scores)):
        if len(labels) != len(scores):
            raise ValueError(f"sample {i} ({srcs[i]}): {len(labels)} step labels but {len(scores)} step scores")
        for j, (y, s) in enumerate(zip(labels, scores)):
            y = _norm_label(y, f"sample {i} step {j}")
            if y == -1:
                n_neutral += 1
                continue
            if s is None or (isinstance(s, float) and math.isnan(s)):
                raise ValueError(f"sample {i} ({srcs[i]}) step {j}: no score")
            p = float(s) >= threshold
            pooled_y.append(y)
            pooled_p.append(p)
            by_src[srcs[i]][0].append(y)
            by_src[srcs[i]][1].append(p)
    per_source = {src: _step_f1_block(ys, ps) for src, (ys, ps) in sorted(by_src.items())}
    return {
        "overall": _step_f1_block(pooled_y, pooled_p),
        "per_source": per_source,
        "mean_source_macro_f1": float(np.mean([b["macro_f1"] for b in per_source.values()])) if per_source else 0.0,
        "n_samples": len(step_labels),
        "n_neutral_steps": n_neutral,
        "threshold": threshold,
    }


def predicted_first_error(scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored below threshold, or -1 if none is."""
    for j, s in enumerate(scores):
        if float(s) < threshold:
            return j
    return -1


def _first_error_block(gold: list[int], pred: list[int]) -> dict[str, Any]:
    err = [(g, p) for g, p in zip(gold, pred) if g != -1]
    ok = [p for g, p in zip(gold, pred) if g == -1]
    acc_err = sum(g == p for g, p in err) / len(err) if err else None
    acc_ok = sum(p == -1 for p in ok) / len(ok) if ok else None
    if acc_err is None or acc_ok is None:
        f1 = None  # undefined without both kinds of sample
    else:
        f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok else 0.0
    return {"acc_erroneous": acc_err, "acc_correct": acc_ok, "f1": f1,
            "n_erroneous": len(err), "n_correct": len(ok)}


def first_error_f1(
    first_error_steps: Sequence[int],
    step_scores: Sequence[Sequence[float]],
    threshold: float = 0.5,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """ProcessBench-style first-error identification.

    first_error_steps[i] is the index of sample i's first wrong step, -1 if all are correct.
    The prediction is the first step with score < threshold (-1 if none). acc_erroneous is
    the exact-match accuracy on samples with an error, acc_correct the rate of predicting -1
    on samples without one, f1 their harmonic mean (None when one kind of sample is absent).
    Reported "overall" and "per_source".
    """
    if len(first_error_steps) != len(step_scores):
        raise ValueError(f"{len(first_error_steps)} gold indices but {len(step_scores)} score lists")
    srcs = _sources_for(len(step_scores), sources)
    gold = [int(g) for g in first_error_steps]
    pred = [predicted_first_error(s, threshold) for s in step_scores]
    for i, (g, s) in enumerate(zip(gold, step_scores)):
        if not -1 <= g < len(s):
            raise ValueError(f"sample {i} ({srcs[i]}): first error {g} outside its {len(s)} steps")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, src in enumerate(srcs):
        groups[src].append(i)
    return {
        "overall": _first_error_block(gold, pred),
        "per_source": {src: _first_error_block([gold[i] for i in ix], [pred[i] for i in ix])
                       for src, ix in sorted(groups.items())},
        "predicted_first_error": pred,
        "threshold": threshold,
    }


__all__ = ["process_bench_f1", "predicted_first_error", "first_error_f1"]
