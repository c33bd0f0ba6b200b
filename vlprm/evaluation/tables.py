"""Evaluation stage 4: every metric for every k from the same candidates, per benchmark and
overall, and the tables (metrics.json, metrics.md, metrics.csv) and plots.

Nothing is dropped: every loaded problem is a row of every table. A problem whose sampling
failed (or that has fewer than N_max candidates) has its missing candidates counted as wrong
answers, in pass@k, maj@k, BoN@k and weighted@k alike, and each table says how many problems it
covers and how many of them failed. "overall" pools every configured benchmark.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlprm.evaluation.sample import candidate_solutions, record_id
from vlprm.evaluation.search_stage import search_stem
from vlprm.runs import is_failed, read_stage

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig

log = logging.getLogger(__name__)


def _failed_row(aggs: list[str], pad_scores: bool, outcome: bool) -> dict[str, Any]:
    """A candidate that does not exist (failed sampling): a wrong answer. When the problem has
    no scored candidate at all, it still takes part in every BoN / weighted row (as a wrong
    pick) instead of leaving them."""
    row: dict[str, Any] = {"answer": None, "correct": False, "num_tokens": 0, "failed": True}
    if pad_scores:
        row["score"] = {a: 0.0 for a in aggs}
        if outcome:
            row["score"]["outcome"] = 0.0
            row["outcome"] = {"p_plus": [0.0], "num_tokens": 0}
    return row


def candidate_rows(cfg: "EvalConfig", problems: dict[str, list], cands: dict, scores: dict) -> dict[str, dict[str, list]]:
    """{benchmark: {record id: [N_max candidate dicts for tts_metrics]}} for every loaded problem."""
    from vlprm.answers import normalize_answer
    from vlprm.prm.aggregate import aggregate

    aggs = [a for a in cfg.prm.aggregations if a != "outcome"]
    any_scores = bool(scores)
    out: dict[str, dict[str, list]] = defaultdict(dict)
    # Sorted: the same numbers (to the last bit) whether the records came from one file or shards.
    keyed = sorted((record_id(bench, pr), bench, pr) for bench, prs in problems.items() for pr in prs)
    for pid, bench, pr in keyed:
        rec = cands.get(pid)
        sols = candidate_solutions(rec) if rec is not None and not is_failed(rec) else []
        srec = scores.get(pid) if sols else None
        if srec is not None and len(srec["scores"]) != len(sols):
            srec = None  # scored for other candidates (resampled since): not scored now
        rows = []
        for i, sol in enumerate(sols[:cfg.policy.n]):
            row: dict[str, Any] = {"answer": normalize_answer(sol.final_answer, pr.answer_type, pr.options),
                                   "correct": bool(sol.correct), "num_tokens": sol.metadata.get("num_tokens") or 0}
            if srec is not None:
                st = srec["scores"][i]
                row["score"] = {agg: aggregate(st, agg) for agg in aggs}
                row["prm_tokens"] = st.get("num_tokens", 0)
                if srec.get("outcome"):
                    row["score"]["outcome"] = aggregate(srec["outcome"][i], "outcome")
                    row["outcome"] = srec["outcome"][i]  # -> bon@k[vlprm_outcome], the authors' rule
                    row["prm_tokens"] += srec["outcome"][i].get("num_tokens", 0)
            rows.append(row)
        pad = _failed_row(aggs, pad_scores=any_scores and not rows, outcome=cfg.prm.outcome)
        rows += [dict(pad) for _ in range(cfg.policy.n - len(rows))]
        out[bench][pid] = rows
    return out


def _compute(by_pid: dict[str, list]) -> dict:
    """Average policy tokens generated and PRM tokens read per problem for all N candidates."""
    n = len(by_pid)
    return {"policy_tokens_per_problem": sum(c.get("num_tokens", 0) for cs in by_pid.values() for c in cs) / n,
            "prm_tokens_per_problem": sum(c.get("prm_tokens", 0) for cs in by_pid.values() for c in cs) / n}


def _block(by_pid: dict[str, list], seed: int) -> dict:
    from vlprm.metrics import tts_metrics

    m = tts_metrics(by_pid, seed=seed, vote_subsets="random")
    m["compute"] = _compute(by_pid)
    m["counts"]["failed_problems"] = sum(all(c.get("failed") for c in cs) for cs in by_pid.values())
    m["counts"]["failed_candidates"] = sum(bool(c.get("failed")) for cs in by_pid.values() for c in cs)
    return m


def compute_metrics(cfg: "EvalConfig", run_dir: Path, problems: dict[str, list]) -> dict:
    """Metrics from every shard's files; writes metrics.json, metrics.md, metrics.csv, plots."""
    rows = candidate_rows(cfg, problems, read_stage(run_dir, "candidates"), read_stage(run_dir, "scores"))
    results: dict[str, Any] = {"benchmarks": {}, "search": {}, "config_name": cfg.name()}
    all_rows: dict[str, list] = {}
    for bench, by_pid in sorted(rows.items()):
        if not by_pid:
            continue  # a shard job's benchmark without problems in this shard (load errors on 0 loaded)
        results["benchmarks"][bench] = _block(by_pid, cfg.seed)
        all_rows.update(by_pid)  # record ids already name their benchmark
    if len(results["benchmarks"]) > 1:
        results["benchmarks"]["overall"] = _block(all_rows, cfg.seed)
        results["benchmarks"]["overall"]["counts"]["benchmarks"] = sorted(rows)
    problems_by_id = {record_id(b, pr): (b, pr) for b, prs in problems.items() for pr in prs}
    for strategy in cfg.search.strategies:
        recs = read_stage(run_dir, search_stem(cfg, strategy))
        per: dict[str, list] = defaultdict(list)
        for pid, (bench, _) in sorted(problems_by_id.items()):
            # A problem without a search record (not searched yet) counts as wrong, and is counted.
            per[bench].append(recs.get(pid) or {"correct": False, "missing": True,
                                                "budget": {"policy_generated_tokens": 0, "prm_tokens": 0}})
        if len(per) > 1:
            per["overall"] = [r for rs in list(per.values()) for r in rs]
        results["search"][strategy] = {
            b: {"accuracy": sum(r["correct"] for r in rs) / len(rs), "problems": len(rs),
                "missing": sum(bool(r.get("missing")) for r in rs), "n": cfg.search.n,
                "policy_tokens": sum(r["budget"]["policy_generated_tokens"] for r in rs) / len(rs),
                "prm_tokens": sum(r["budget"]["prm_tokens"] for r in rs) / len(rs)}
            for b, rs in sorted(per.items()) if rs}
    (run_dir / "metrics.json").write_text(json.dumps(results, indent=1, default=str))
    table = metrics_table(results)
    (run_dir / "metrics.md").write_text(table["markdown"])
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows(table["rows"])
    if cfg.plots and results["benchmarks"]:
        from vlprm.evaluation.plots import plot_accuracy_vs_n

        results["plots"] = plot_accuracy_vs_n(results, run_dir / "plots")
    return results


def fmt(v: Any) -> str:
    """A table cell: a fraction as a percentage, None as blank."""
    return "" if v is None else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))


def metrics_table(results: dict) -> dict:
    """Markdown and CSV rows: benchmark x metric x k (accuracy in %), then step search."""
    ks = sorted({k for m in results["benchmarks"].values() for k in m["ks"]})
    head = ["benchmark", "metric"] + [f"k={k}" for k in ks]
    rows, md_rows = [head], []  # the markdown adds how many problems each row averages over
    for bench, m in results["benchmarks"].items():
        n = m["counts"]["problems"]
        scored = m["counts"].get("scored_problems", {})
        lines = [("pass@k", n, m["pass@k"]), ("maj@k", n, m["maj@k"])]
        lines += [(f"bon@k[{agg}]", scored.get(agg, n), d) for agg, d in m["bon@k"].items()]
        lines += [(f"weighted@k[{agg}]", scored.get(agg, n), d) for agg, d in m["weighted@k"].items()]
        for metric, covered, d in lines:
            rows.append([bench, metric] + [fmt(d.get(k)) for k in ks])
            md_rows.append([bench, str(covered), metric] + [fmt(d.get(k)) for k in ks])
    md_head = ["benchmark", "problems", "metric"] + [f"k={k}" for k in ks]
    md = ["| " + " | ".join(md_head) + " |", "|" + "---|" * len(md_head)]
    md += ["| " + " | ".join(r) + " |" for r in md_rows]
    md += ["", "Accuracy in %, each k averaged over subsets of the N sampled candidates (exact for BoN, "
           "up to 100 random subsets for votes). BoN ties are averaged, never resolved as correct. "
           "`problems` is how many problems a row averages over; a problem whose sampling failed counts "
           "as wrong in every row."]
    if results["benchmarks"]:
        md += ["", "| benchmark | problems | failed (counted wrong) | policy tokens / problem (N) | "
               "PRM tokens / problem (N) |", "|---|---|---|---|---|"]
        for bench, m in results["benchmarks"].items():
            c = m["compute"]
            md.append(f"| {bench} | {m['counts']['problems']} | {m['counts'].get('failed_problems', 0)} | "
                      f"{c['policy_tokens_per_problem']:.0f} | {c['prm_tokens_per_problem']:.0f} |")
        ov = results["benchmarks"].get("overall")
        if ov:
            md += ["", f"overall pools the problems of {len(ov['counts']['benchmarks'])} benchmarks: "
                   + ", ".join(ov["counts"]["benchmarks"])]
    if results.get("search"):
        md += ["", "| strategy | benchmark | problems | not searched (counted wrong) | n | accuracy | "
               "policy tokens / problem | PRM tokens / problem |", "|---|---|---|---|---|---|---|---|"]
        rows.append([])
        rows.append(["strategy", "benchmark", "problems", "n", "accuracy", "policy_tokens", "prm_tokens"])
        for strategy, per in results["search"].items():
            for bench, r in per.items():
                md.append(f"| {strategy} | {bench} | {r['problems']} | {r.get('missing', 0)} | {r['n']} | "
                          f"{fmt(r['accuracy'])} | {r['policy_tokens']:.0f} | {r['prm_tokens']:.0f} |")
                rows.append([strategy, bench, r["problems"], r["n"], fmt(r["accuracy"]), f"{r['policy_tokens']:.0f}",
                             f"{r['prm_tokens']:.0f}"])
    return {"markdown": "\n".join(md) + "\n", "rows": rows}
