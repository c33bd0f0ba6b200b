"""VisualProcessBench mode: score every step of every sample and report step F1 per data source
and the first-error F1 (ProcessBench-style).

    step_scores[<tag>].jsonl   {"id", "source", "labels", "p_plus", ...} per sample
    metrics.md / metrics.json  F1 tables; 0 scored steps is an error, never an empty table
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from vlprm.evaluation.scoring import check_prm_fingerprint
from vlprm.evaluation.tables import fmt
from vlprm.runs import RunError, StageSummary, chunks, read_stage, stage_file

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig


def score_steps(cfg: "EvalConfig", run_dir: Path, samples: list, scorer) -> StageSummary:
    """Score the samples not scored in any file of the run."""
    from vlprm.data.store import JsonlStore
    from vlprm.prm.scorer import build_prm_sample

    check_prm_fingerprint(cfg, run_dir)
    summ = StageSummary("score")
    store = JsonlStore(stage_file(run_dir, "step_scores", cfg.tag()))
    done = set(read_stage(run_dir, "step_scores"))
    todo = [s for s in samples if str(s.id) not in done]
    summ.done_before = len(samples) - len(todo)
    t0 = time.time()
    for part in tqdm(chunks(todo, max(1, cfg.prm.batch_size) * 8), desc="score steps", disable=not todo):
        res = scorer.score([build_prm_sample(s.problem, s.steps, id=str(s.id)) for s in part])
        for s, r in zip(part, res):
            rec = {"id": str(s.id), "source": s.source, "labels": s.labels, **r.to_dict()}
            store.append(rec)
            summ.written += 1
            if r.error or not r.p_plus:
                summ.failed["no_scores"] += 1
    store.close()
    summ.seconds = time.time() - t0
    return summ


def processbench_metrics(cfg: "EvalConfig", run_dir: Path) -> dict:
    """F1 from every shard's step scores; writes metrics.md and metrics.json."""
    from vlprm.metrics import first_error_f1, process_bench_f1

    t0 = time.time()
    merged = read_stage(run_dir, "step_scores")
    recs = [r for r in merged.values() if r.get("p_plus")]
    failed = len(merged) - len(recs)
    th = cfg.prm.threshold
    f1 = process_bench_f1([r["labels"] for r in recs], [r["p_plus"] for r in recs], th,
                          [r["source"] for r in recs]) if recs else None
    if not recs or not f1["overall"]["n_steps"]:
        raise RunError(f"VisualProcessBench: 0 scored steps in {run_dir} ({len(merged)} samples on disk, "
                       f"{failed} without scores; every step may be neutral): run the score stage or check "
                       "the PRM and the data")
    gold_first = [next((j for j, y in enumerate(r["labels"]) if y == -1), -1) for r in recs]
    fe = first_error_f1(gold_first, [r["p_plus"] for r in recs], th, [r["source"] for r in recs])
    result = {"step_f1": f1, "first_error": fe, "scored": len(recs), "failed": failed,
              "seconds": round(time.time() - t0, 1)}
    lines = ["| source | samples | steps | F1 (correct) | F1 (incorrect) | macro F1 | first-error F1 |",
             "|---|---|---|---|---|---|---|"]
    n_samples = {src: sum(r["source"] == src for r in recs) for src in f1["per_source"]}
    fe_src = fe.get("per_source", {})
    for src, blk in list(f1["per_source"].items()) + [("overall", f1["overall"])]:
        fe_blk = fe["overall"] if src == "overall" else fe_src.get(src, {})
        lines.append(f"| {src} | {n_samples.get(src, len(recs))} | {blk['n_steps']} | {fmt(blk['f1_correct'])} | "
                     f"{fmt(blk['f1_incorrect'])} | {fmt(blk['macro_f1'])} | {fmt(fe_blk.get('f1'))} |")
    lines += ["", f"threshold {th}; neutral steps excluded ({f1['n_neutral_steps']}); "
              f"mean of per-source macro F1: {fmt(f1['mean_source_macro_f1'])}; "
              f"first-error F1 (ProcessBench-style): {fmt(fe['overall'].get('f1'))}; "
              f"samples scored {len(recs)}, failed {failed}"]
    (run_dir / "metrics.md").write_text("\n".join(lines) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def run_processbench(cfg: "EvalConfig", run_dir: Path, samples: list, scorer) -> tuple[dict, StageSummary | None]:
    """The score stage (a metrics-only run merges what the shards scored), then the metrics."""
    summ = score_steps(cfg, run_dir, samples, scorer) if scorer is not None else None
    if "metrics" not in cfg.stages:
        return {"scored_new": summ.written if summ else 0}, summ
    return processbench_metrics(cfg, run_dir), summ
