"""EVPV ablations: constraint corruption, perception intervention, VisualProcessBench.

* Constraint corruption (`corrupt_description`, `corruption_sweep`): DROP removes described facts,
  FLIP changes a number, colour, size, shape or relation word inside a fact, at a ratio of the
  facts. Seeded per (seed, image key, mode): the facts are taken in one seeded order and ratio r
  corrupts the first round(r * n), so a higher ratio corrupts a superset of a lower one, ratio 0
  changes nothing and DROP at ratio 1 leaves an empty description. The sweep reports, per mode
  and ratio, the mean reliability of visually dependent steps and the best-of-N accuracy with
  EVPV-gated scores.
* Perception intervention (`perception_intervention`): the policy answers with the image, with
  the image plus an oracle description (from ground-truth perception facts), with a corrupted
  description and no image, and with the question only; accuracy of each and what EVPV says
  about each.
* VisualProcessBench (`visual_process_bench`): a per-step judge with and without the
  description, scored by `vlprm.metrics.process_bench_f1`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from vlprm.data.store import stable_seed
from vlprm.evpv.checklist import strip_visual_tags
from vlprm.evpv.description import LIST_FIELDS, ImageDescription, description_from_facts
from vlprm.evpv.scoring import EVPVResult, EVPVScorer
from vlprm.metrics import bon_at_k, process_bench_f1
from vlprm.prm.aggregate import aggregate
from vlprm.prm.format import PRMSample

MODES = ("drop", "flip")
DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

_NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
_SWAPS = {
    "left": "right", "right": "left", "above": "below", "below": "above", "top": "bottom", "bottom": "top",
    "upper": "lower", "lower": "upper", "inside": "outside", "outside": "inside", "larger": "smaller",
    "smaller": "larger", "bigger": "smaller", "taller": "shorter", "shorter": "taller", "before": "after",
    "after": "before", "clockwise": "counterclockwise", "counterclockwise": "clockwise",
    "horizontal": "vertical", "vertical": "horizontal", "first": "last", "last": "first",
}
_CYCLES = [
    ["red", "blue", "green", "yellow", "orange", "purple"],
    ["small", "medium", "large"],
    ["circle", "square", "triangle", "hexagon", "star", "pentagon", "diamond"],
    ["short", "tall"],
]
_WORD_RE = re.compile(r"[A-Za-z]+")


# --------------------------------------------------------------------------- corruption


@dataclass
class Corruption:
    """What a corruption changed: (field, index, before, after or None for a drop)."""

    mode: str
    ratio: float
    n_facts: int
    changes: list[tuple[str, int, str, str | None]] = field(default_factory=list)


def _flip_targets(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every token FLIP may change in a fact."""
    out = [(m.start(), m.end(), "number") for m in _NUMBER_RE.finditer(text)]
    for m in _WORD_RE.finditer(text):
        w = m.group(0).lower()
        if w in _SWAPS:
            out.append((m.start(), m.end(), "relation"))
        elif any(w in c for c in _CYCLES):
            out.append((m.start(), m.end(), "attribute"))
    return sorted(out)


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[0].upper() + new[1:] if old[:1].isupper() else new


def flip_fact(text: str, rng: random.Random) -> str | None:
    """Change one number, relation or attribute word of a fact (None if it has none)."""
    targets = _flip_targets(text)
    if not targets:
        return None
    start, end, kind = targets[rng.randrange(len(targets))]
    old = text[start:end]
    if kind == "number":
        v = float(old)
        deltas = [d for d in (1, 2, 3, -1, -2, -3) if v + d >= 0]
        new_v = v + rng.choice(deltas)
        new = str(int(new_v)) if "." not in old else f"{new_v:.{len(old.split('.')[1])}f}"
    elif kind == "relation":
        new = _match_case(_SWAPS[old.lower()], old)
    else:
        cycle = next(c for c in _CYCLES if old.lower() in c)
        new = _match_case(rng.choice([w for w in cycle if w != old.lower()]), old)
    return text[:start] + new + text[end:]


def _set_fact(desc: ImageDescription, fld: str, idx: int, text: str | None) -> None:
    if fld == "summary":
        desc.summary = text or ""
    else:
        getattr(desc, fld)[idx] = text


def corrupt_description(desc: ImageDescription, mode: str, ratio: float, seed: int = 0,
                        key: str = "") -> tuple[ImageDescription, Corruption]:
    """A corrupted copy of `desc` (the original is untouched) and what changed.

    mode "drop": remove round(ratio * n_facts) facts (the summary is a fact). mode "flip":
    change one token in round(ratio * n_flippable) of the facts that have a number, relation,
    colour, size or shape word. `key` names the image (e.g. the problem id) so that each image
    gets its own corruption; the same (seed, key, mode, ratio) always gives the same result.
    """
    if mode not in MODES:
        raise ValueError(f"corruption mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"corruption ratio must be in [0, 1], got {ratio}")
    out = copy.deepcopy(desc)
    facts = desc.facts()
    log = Corruption(mode=mode, ratio=ratio, n_facts=len(facts))
    order = list(range(len(facts)))
    random.Random(stable_seed(seed, key, mode)).shuffle(order)
    if mode == "drop":
        k = int(math.floor(ratio * len(facts) + 0.5))
        for j in order[:k]:
            fld, idx, text = facts[j]
            _set_fact(out, fld, idx, None)
            log.changes.append((fld, idx, text, None))
        for fld in LIST_FIELDS:
            setattr(out, fld, [t for t in getattr(out, fld) if t is not None])
        return out, log
    flippable = [j for j in order if _flip_targets(facts[j][2])]
    k = int(math.floor(ratio * len(flippable) + 0.5))
    for j in flippable[:k]:
        fld, idx, text = facts[j]
        # Each fact's flip has its own seed: a fact flipped at ratio 0.2 is flipped the same at 0.5.
        new = flip_fact(text, random.Random(stable_seed(seed, key, "flip", fld, idx, text)))
        _set_fact(out, fld, idx, new)
        log.changes.append((fld, idx, text, new))
    return out, log


# --------------------------------------------------------------------------- the sweep


@dataclass
class CandidateSet:
    """The N scored candidates of one problem for the sweep.

    samples: PRM samples (steps may carry "[visual: ...]" tags); correct: their answers'
    correctness; description: the description of the problem's image (described or oracle).
    base_scores: per-sample base step rewards (StepScores or P(+) lists); None -> the scorer's
    base scorer is run once.
    """

    problem_id: str
    samples: list[PRMSample]
    correct: list[bool]
    description: ImageDescription
    base_scores: list[Any] | None = None


def _bon(results: Sequence[EVPVResult], correct: Sequence[bool], method: str) -> float:
    scores = [aggregate(r.gated, method) if r.gated is not None else None for r in results]
    return bon_at_k(scores, correct, len(correct))


def corruption_sweep(sets: Sequence[CandidateSet], scorer: EVPVScorer, *, modes: Sequence[str] = MODES,
                     ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                     aggregation: str = "min") -> list[dict]:
    """Rows {mode, ratio, mean_reliability, bon_accuracy, base_bon_accuracy, facts_changed, ...}.

    mean_reliability: over the visually dependent steps of all candidates; bon_accuracy: best-of-N
    (all N candidates, ties split) with EVPV-gated scores aggregated by `aggregation`,
    averaged over problems; base_bon_accuracy: the same with the ungated base rewards.
    """
    if not sets:
        raise ValueError("corruption_sweep: no candidate sets")
    flat = [s for cs in sets for s in cs.samples]
    if any(cs.base_scores is None for cs in sets):
        if scorer.base_scorer is None:
            raise ValueError("candidate sets without base scores need an EVPV scorer with a base scorer")
        computed = scorer.base_scorer.score([dataclasses.replace(s, steps=strip_visual_tags(s.steps))
                                             for s in flat])
        i = 0
        for cs in sets:
            if cs.base_scores is None:
                cs.base_scores = computed[i:i + len(cs.samples)]
            i += len(cs.samples)
    base_flat = [b for cs in sets for b in cs.base_scores]  # type: ignore[union-attr]
    rows = []
    for mode in modes:
        for ratio in ratios:
            descs, changed, total = [], 0, 0
            for cs in sets:
                d, log = corrupt_description(cs.description, mode, ratio, seed, key=cs.problem_id)
                descs.extend([d] * len(cs.samples))
                changed += len(log.changes)
                total += log.n_facts
            results = scorer.score_detailed(flat, base_scores=base_flat, descriptions=descs)
            rel = [r for res in results for r, v in zip(res.reliability, res.visual_dependent) if v]
            accs, base_accs, i = [], [], 0
            for cs in sets:
                chunk = results[i:i + len(cs.samples)]
                i += len(cs.samples)
                accs.append(_bon(chunk, cs.correct, aggregation))
                base_scores = [aggregate(r.base, aggregation) if r.base is not None else None for r in chunk]
                base_accs.append(bon_at_k(base_scores, cs.correct, len(cs.correct)))
            rows.append({"mode": mode, "ratio": ratio,
                         "mean_reliability": sum(rel) / len(rel) if rel else None,
                         "bon_accuracy": sum(accs) / len(accs), "base_bon_accuracy": sum(base_accs) / len(base_accs),
                         "facts_changed": changed, "facts_total": total, "visual_steps": len(rel),
                         "fallback_steps": sum(r.fallback_steps for r in results),
                         "problems": len(sets), "candidates": len(flat), "aggregation": aggregation})
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of rows (floats with 3 decimals)."""
    def cell(v):
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


# --------------------------------------------------------------------------- synthetic candidates


def oracle_description(problem: Any) -> ImageDescription | None:
    """The description built from a problem's ground-truth perception facts, or None."""
    facts = (getattr(problem, "metadata", None) or {}).get("perception_facts")
    return description_from_facts(facts) if facts else None


def puzzle_candidates(problem: Any, n_wrong: int = 3, seed: int = 0) -> CandidateSet | None:
    """Hand-made candidates for a puzzle with ground truth: one correct solution (its perception
    facts as tagged perception steps, its reasoning steps, the right answer) and n_wrong
    solutions that misread one fact (a FLIP of it, tagged as such) and give a wrong option.
    Every candidate gets the same constant base reward, so any difference in the gated score
    comes from EVPV. None if the problem has no perception facts or reasoning steps."""
    from vlprm.prompts import question_with_options

    md = getattr(problem, "metadata", None) or {}
    facts, reasoning = md.get("perception_facts"), md.get("reasoning_steps")
    if not facts or not reasoning:
        return None
    desc = description_from_facts(facts)
    answer = str(problem.answer)
    options = problem.options or []
    letters = [chr(ord("A") + i) for i in range(len(options))]
    wrong_letters = [x for x in letters if x != answer] or ["Z"]
    rng = random.Random(stable_seed(seed, problem.id, "candidates"))

    def solution(fact_list: list[str], final: str) -> list[str]:
        steps = [f"{f} [visual: {f}]" for f in fact_list]
        steps += [f"{r} [visual: none]" for r in reasoning]
        steps.append(f"Therefore, the final answer is \\boxed{{{final}}}. [visual: none]")
        return steps

    samples = [PRMSample(question=question_with_options(problem), steps=solution(list(facts), answer),
                         images=list(problem.images), id=f"{problem.id}#0")]
    correct = [True]
    flippable = [i for i, f in enumerate(facts) if _flip_targets(f)]
    for j in range(n_wrong):
        if not flippable:
            break
        i = flippable[rng.randrange(len(flippable))]
        bad = list(facts)
        bad[i] = flip_fact(facts[i], random.Random(stable_seed(seed, problem.id, "wrong", j))) or facts[i]
        samples.append(PRMSample(question=question_with_options(problem),
                                 steps=solution(bad, wrong_letters[j % len(wrong_letters)]),
                                 images=list(problem.images), id=f"{problem.id}#{j + 1}"))
        correct.append(False)
    base = [[1.0] * len(s.steps) for s in samples]
    return CandidateSet(problem_id=problem.id, samples=samples, correct=correct, description=desc, base_scores=base)


# --------------------------------------------------------------------------- perception intervention

CONDITIONS = ("image", "image+oracle", "corrupted_no_image", "question_only")


def perception_intervention(problems: Sequence[Any], policy: Any, scorer: EVPVScorer, *, n: int = 1,
                            sampling: Any = None, corruption: tuple[str, float] = ("flip", 0.5), seed: int = 0,
                            style: str = "structured", aggregation: str = "min",
                            conditions: Sequence[str] = CONDITIONS) -> dict:
    """Answer each problem under each condition with the policy, check the answers, and score
    every solution with EVPV (describing the real image).

    Returns {"rows": [{condition, accuracy, mean_reliability, mean_score, solutions, no_answer,
    failed, skipped}], "solutions": [...per solution...]}. Problems without perception facts
    are skipped (counted) for the conditions that need an oracle description.
    """
    from vlprm.answers import check_answer, extract_answer
    from vlprm.backends.base import ChatRequest, SamplingConfig
    from vlprm.prm.scorer import build_prm_sample
    from vlprm.prompts import build_policy_messages_with_description
    from vlprm.steps import split_steps

    sampling = (sampling or SamplingConfig(temperature=0.7, max_tokens=1024)).replace(n=n)
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {', '.join(CONDITIONS)}")
    reqs, owners, skipped = [], [], defaultdict(int)
    for p in problems:
        oracle = oracle_description(p)
        for cond in conditions:
            if cond in ("image+oracle", "corrupted_no_image") and oracle is None:
                skipped[cond] += 1
                continue
            if cond == "image":
                msgs = build_policy_messages_with_description(p, None, True, style)
            elif cond == "image+oracle":
                msgs = build_policy_messages_with_description(p, oracle.to_text(), True, style)
            elif cond == "corrupted_no_image":
                bad, _ = corrupt_description(oracle, corruption[0], corruption[1], seed, key=p.id)
                msgs = build_policy_messages_with_description(p, bad.to_text(), False, style)
            else:
                msgs = build_policy_messages_with_description(p, None, False, style)
            reqs.append(ChatRequest(messages=msgs, seed=stable_seed(seed, p.id, cond), id=f"{p.id}|{cond}"))
            owners.append((p, cond))
    # A failed request is counted per condition; the policy raising (a dead engine) stops the ablation.
    results = policy.generate(reqs, sampling, desc="policy (perception intervention)")
    sols, samples = [], []
    failed = defaultdict(int)
    for (p, cond), res in zip(owners, results):
        if not res.ok:
            failed[cond] += 1
            continue
        for j, text in enumerate(res.texts):
            steps = [s.text for s in split_steps(text, "auto")] or [text.strip() or "(empty)"]
            pred = extract_answer(text, p.options, p.answer_type)
            sols.append({"problem_id": p.id, "condition": cond, "index": j, "answer": pred,
                         "correct": bool(check_answer(pred, p, extract=False)) if pred is not None else False,
                         "text": text})
            samples.append(build_prm_sample(p, steps, id=f"{p.id}|{cond}|{j}"))
    evpv = scorer.score_detailed(samples) if samples else []
    for sol, r in zip(sols, evpv):
        sol["mean_reliability"] = r.mean_reliability()
        sol["score"] = aggregate(r.gated, aggregation) if r.gated is not None else None
        sol["fallback_steps"] = r.fallback_steps
    rows = []
    for cond in conditions:
        mine = [s for s in sols if s["condition"] == cond]
        rel = [s["mean_reliability"] for s in mine if s["mean_reliability"] is not None]
        sc = [s["score"] for s in mine if s["score"] is not None]
        rows.append({"condition": cond, "solutions": len(mine),
                     "accuracy": sum(s["correct"] for s in mine) / len(mine) if mine else None,
                     "no_answer": sum(s["answer"] is None for s in mine),
                     "mean_reliability": sum(rel) / len(rel) if rel else None,
                     "mean_score": sum(sc) / len(sc) if sc else None,
                     "fallback_steps": sum(s["fallback_steps"] for s in mine),
                     "failed": failed[cond], "skipped": skipped[cond]})
    return {"rows": rows, "solutions": sols, "aggregation": aggregation}


# --------------------------------------------------------------------------- VisualProcessBench

def visual_process_bench(samples: Sequence[Any], judge: Any, *, describer: Any = None,
                         descriptions: Mapping[str, ImageDescription] | None = None, threshold: float = 0.5,
                         fallback_score: float = 1.0, cache_dir: str | None = None, seed: int = 0,
                         max_tokens: int = 1024, progress: bool = True) -> dict:
    """Describe-then-judge on VisualProcessBench-like records (id, problem, steps, labels, source).

    Two conditions: "judge" (image + steps) and "describe_then_judge" (image + description +
    steps). Descriptions come from `descriptions` ({sample id: description}) or the describer
    (cached per image). Returns {"scores": {condition: [[step scores]]}, "metrics": {condition:
    process_bench_f1 result}, "counts": {...}}. max_tokens bounds the describer's and the
    judge's replies (greedy).
    """
    from pathlib import Path

    from vlprm.backends.base import SamplingConfig
    from vlprm.cache import ReplyStore
    from vlprm.evpv.description import describe_images
    from vlprm.evpv.judge import StepJudgeScorer
    from vlprm.prompts import question_with_options

    prm = [PRMSample(question=question_with_options(s.problem), steps=list(s.steps),
                     images=list(s.problem.images), id=str(s.id)) for s in samples]
    cache = Path(cache_dir) if cache_dir else None
    counts: dict[str, Any] = {"samples": len(prm)}
    if descriptions is None:
        if describer is None:
            raise ValueError("visual_process_bench needs descriptions= or a describer")
        store = ReplyStore(cache / "descriptions.jsonl" if cache else None)
        got = describe_images([p.images for p in prm], describer, store=store, seed=seed, progress=progress,
                              sampling=SamplingConfig(temperature=0.0, max_tokens=max_tokens))
        descriptions = {p.id: d.description for p, d in zip(prm, got) if d.ok}
        counts["description_unreadable"] = sum(not d.ok for d in got)
    scores, metrics = {}, {}
    labels = [list(s.labels) for s in samples]  # VisualProcessBench's 1 / 0 (neutral) / -1, as metrics takes
    sources = [getattr(s, "source", "all") or "all" for s in samples]
    for cond, descs in (("judge", None), ("describe_then_judge", descriptions)):
        store = ReplyStore(cache / f"judge_{cond}.jsonl" if cache else None)
        judge_scorer = StepJudgeScorer(judge, descriptions=descs, fallback_score=fallback_score, store=store,
                                       seed=seed, progress=progress,
                                       sampling=SamplingConfig(temperature=0.0, max_tokens=max_tokens))
        got = judge_scorer.score(prm)
        scores[cond] = [g.p_plus for g in got]
        counts[cond] = dict(judge_scorer.counts)
        metrics[cond] = process_bench_f1(labels, scores[cond], threshold=threshold, sources=sources)
    return {"scores": scores, "metrics": metrics, "counts": counts}


def puzzle_process_bench(problems: Sequence[Any], n_wrong: int = 1, seed: int = 0) -> list[Any]:
    """VisualProcessBench-like samples from puzzles with ground truth (for dry runs and tests):
    the hand-made candidates of `puzzle_candidates` with step labels 1 (correct) and -1
    (incorrect): in a wrong candidate the misread fact and every later step are -1."""
    from vlprm.data.benchmarks import ProcessBenchSample

    out = []
    for p in problems:
        cs = puzzle_candidates(p, n_wrong, seed)
        if cs is None:
            continue
        gold = strip_visual_tags(cs.samples[0].steps)
        for s, ok in zip(cs.samples, cs.correct):
            steps = strip_visual_tags(s.steps)
            if ok:
                labels = [1] * len(steps)
            else:
                first = next((k for k, (a, b) in enumerate(zip(steps, gold)) if a != b), len(steps) - 1)
                labels = [1] * first + [-1] * (len(steps) - first)
            out.append(ProcessBenchSample(id=s.id, problem=p, steps=steps, labels=labels, source=p.benchmark))
    return out
