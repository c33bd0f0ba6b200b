"""Test-time scaling evaluation: sample once, score, search, and compute every metric.

Stages (each resumable, each an append-only JSONL keyed by problem id, each runnable alone):

1. sample   N_max candidates per problem from the policy (one request with n=N_max, seed from
            (seed, problem id)); each candidate's steps, extracted answer and correctness.
            -> candidates[.shard].jsonl
2. score    P(+) of every step of every candidate with the PRM (or EVPV-gated P(+)), plus an
            outcome score per candidate when prm.outcome. -> scores[.shard].jsonl
3. search   step-level strategies (greedy, beam, DVTS) guided by the PRM.
            -> search_<strategy>_<settings>[.shard].jsonl

[.shard] is ".<benchmarks>" when --only_benchmarks is given and ".shard<i>of<n>" for --shard i/n,
so concurrent jobs never write one file. Records are keyed by "<benchmark>/<problem id>" (ids are
unique only within a benchmark); a stage skips what any file of the run already holds.
4. metrics  pass@k, BoN@k (per aggregation), weighted@k, maj@k for every k = 1, 2, 4, ... N_max
            from the same candidates, per benchmark and overall; step search accuracy and
            compute; tables (markdown + CSV) and plots. Reads every shard's files, so running
            it after all shards finish is the merge step.

processbench mode scores every step of VisualProcessBench and reports F1 per data source.

    python eval/run_eval.py --config eval/configs/tiny.yaml --policy.n 8
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from vlprm.config import config_help, load_config, to_yaml
from vlprm.data.store import JsonlStore, in_shard, parse_shard, read_jsonl
from vlprm.evaluation.config import EvalConfig

SCORE_CHUNK = 64  # candidates per scorer call between checkpoints


# --------------------------------------------------------------------------- helpers


def _shard_suffix(cfg: EvalConfig) -> str:
    """What this process's files are named by: its benchmarks (--only_benchmarks) and its shard.
    Jobs that run at the same time (one per benchmark x shard) never append to the same file."""
    i, n = parse_shard(cfg.shard)
    parts = []
    if cfg.only_benchmarks:
        parts.append("+".join(sorted(re.sub(r"[^A-Za-z0-9_-]+", "-", b) for b in cfg.only_benchmarks)))
    if n > 1:
        parts.append(f"shard{i}of{n}")
    return "".join("." + x for x in parts)


def _all_shards(run_dir: Path, stem: str) -> list[Path]:
    """Every shard file of a stage (and the unsharded one): the merge reads them all. Only
    `stem.jsonl` and `stem.<suffix>.jsonl` match (stems hold no dots), never another stem that
    merely starts with this one."""
    paths = glob.glob(glob.escape(str(run_dir / stem)) + ".jsonl") + \
        glob.glob(glob.escape(str(run_dir / stem)) + ".*.jsonl")
    return sorted(Path(p) for p in paths)


def _read_merged(run_dir: Path, stem: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in _all_shards(run_dir, stem):
        for rec in read_jsonl(p):
            out[str(rec["id"])] = rec
    return out


def record_id(bench: str, problem) -> str:
    """The key of a problem's records: problem ids are unique only within a benchmark
    (MathVista and MathVision both number theirs 1, 2, ...)."""
    return f"{bench}/{problem.id}"


def load_problems(cfg: EvalConfig) -> tuple[dict[str, list], dict[str, dict]]:
    """{benchmark key: problems} for this shard, and a load report per benchmark."""
    from vlprm.data.benchmarks import LoadReport, load_benchmark

    shard = parse_shard(cfg.shard)
    problems, reports = {}, {}
    for spec in cfg.benchmarks:
        if cfg.only_benchmarks and spec.name not in cfg.only_benchmarks and spec.key not in cfg.only_benchmarks:
            continue
        if spec.name == "visualprocessbench" and cfg.mode != "processbench":
            raise ValueError("visualprocessbench is evaluated with mode: processbench")
        kw: dict[str, Any] = {"on_error": "skip"}
        if spec.first_n_per_type is not None:
            kw["first_n_per_type"] = spec.first_n_per_type
        report = LoadReport(benchmark=spec.name, source=spec.path)
        items = load_benchmark(spec.name, spec.path, split=spec.split, limit=spec.limit, report=report, **kw)
        items = [x for x in items if in_shard(str(x.id), shard)]
        problems[spec.key] = items
        reports[spec.key] = {"loaded": report.loaded, "skipped": len(report.skipped),
                             "skip_reasons": dict(report.reasons)}
    return problems, reports


def make_policy(cfg: EvalConfig):
    from vlprm.backends import make_generator

    p = cfg.policy
    kw: dict[str, Any] = {}
    if p.backend == "vllm":
        kw.update(max_model_len=p.max_model_len, seed=cfg.seed)
        if p.gpu_memory_utilization:
            kw["gpu_memory_utilization"] = p.gpu_memory_utilization
    elif p.backend == "openai":
        kw["base_url"] = p.base_url
    return make_generator(p.backend, p.model, **kw)


def make_prm_scorer(cfg: EvalConfig, *, mode: str = "one_pass"):
    """The PRM scorer; EVPV wraps it when cfg.scorer == "evpv"."""
    from vlprm.prm.scorer import make_scorer

    p = cfg.prm
    kw: dict[str, Any] = {"mode": mode, **p.settings_overrides()}
    if p.backend == "hf":
        kw.update(batch_size=p.batch_size, device=p.device or _default_prm_device())
    return make_scorer(p.backend, p.model, **kw)


def _default_prm_device() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    # The policy's vLLM engine sits on GPU 0: put the PRM next to it when there is a second GPU.
    return "cuda:1" if torch.cuda.device_count() > 1 else "cuda:0"


def make_scorer_for(cfg: EvalConfig, policy=None, run_dir: Path | None = None):
    """The PRM scorer, wrapped by EVPV when cfg.scorer == "evpv" (its stage caches live in the
    run dir unless the config names a cache_dir, so a killed run resumes without model calls)."""
    base = make_prm_scorer(cfg)
    if cfg.scorer == "evpv":
        from vlprm.evpv import build_evpv_scorer

        evpv_cfg = dict(cfg.evpv)
        if run_dir is not None and not evpv_cfg.get("cache_dir"):
            # One cache per shard / benchmark job: concurrent jobs never append to one file.
            evpv_cfg["cache_dir"] = str(run_dir / f"evpv_cache{_shard_suffix(cfg)}")
        return build_evpv_scorer(evpv_cfg, base_scorer=base, generator=policy)
    return base


# --------------------------------------------------------------------------- stages


def stage_sample(cfg: EvalConfig, run_dir: Path, problems: dict[str, list], policy, summary: dict) -> None:
    from vlprm.backends import SamplingConfig
    from vlprm.synthesis.rollouts import parse_solution, rollout_request

    p = cfg.policy
    sampling = SamplingConfig(n=p.n, max_tokens=p.max_tokens, **p.sampling_defaults())
    store = JsonlStore(run_dir / f"candidates{_shard_suffix(cfg)}.jsonl")
    # Done in any file of the run (another shard layout, an unsharded run): never sampled twice.
    merged = {**_read_merged(run_dir, "candidates"), **{k: store.get(k) for k in store.keys()}}
    # A failed record (the request errored) counts as done unless retry_failed: then it is sampled
    # again and the new record supersedes it (last write wins when files are read).
    done = {k for k, r in merged.items() if not (cfg.retry_failed and r.get("error"))}
    todo = [(bench, pr) for bench, prs in problems.items() for pr in prs if record_id(bench, pr) not in done]
    n_done = sum(1 for bench, prs in problems.items() for pr in prs if record_id(bench, pr) in done)
    t0 = time.time()
    failed = Counter()
    chunk = max(1, cfg.sample_chunk)  # a kill loses at most one chunk of generation
    with tqdm(total=len(todo), desc="sample", disable=not todo) as bar:
        for b in range(0, len(todo), chunk):
            part = todo[b:b + chunk]
            reqs = [rollout_request(pr, style=p.style, seed=cfg.seed) for _, pr in part]
            results = policy.generate(reqs, sampling, progress=False)
            for (bench, pr), res in zip(part, results):
                rec: dict[str, Any] = {"id": record_id(bench, pr), "problem_id": str(pr.id), "benchmark": bench,
                                       "prompt_tokens": res.prompt_tokens, "error": res.error, "candidates": []}
                if res.ok:
                    for i, c in enumerate(res.completions):
                        sol = parse_solution(pr, i, c.text, policy=p.model, style=p.style, max_steps=p.max_steps,
                                             finish_reason=c.finish_reason, num_tokens=c.num_tokens)
                        rec["candidates"].append({
                            "index": i, "text": c.text, "steps": [s.text for s in sol.steps],
                            "kinds": [s.kind for s in sol.steps], "answer": sol.final_answer,
                            "correct": bool(sol.correct), "num_tokens": c.num_tokens,
                            "finish_reason": c.finish_reason})
                else:
                    failed[res.error.split(":")[0][:60]] += 1
                store.append(rec)
            bar.update(len(part))
    store.close()
    summary["sample"] = {"new": len(todo), "done_before": n_done, "failed": dict(failed),
                         "seconds": round(time.time() - t0, 1)}


def _samples_for(problem, cand: dict, index: int):
    from vlprm.prm.scorer import build_prm_sample

    steps = cand["steps"] or [cand["text"] or "(empty)"]
    return build_prm_sample(problem, steps, id=f"{problem.id}#{index}")


def prm_fingerprint(model: str) -> dict:
    """What identifies a PRM checkpoint: its path and its weight files' sizes and times (a hub id
    is identified by its name)."""
    path = Path(model)
    if not path.is_dir():
        return {"model": model}
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    return {"model": str(path.resolve()),
            "weights": {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in files}}


def _check_prm_fingerprint(cfg: EvalConfig, run_dir: Path) -> None:
    """Scores on disk (scores and step search files) must come from the PRM configured now;
    never mix two checkpoints' scores."""
    fp = {"scorer": cfg.scorer, **prm_fingerprint(cfg.prm.model)}
    path = run_dir / "prm_fingerprint.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None  # unreadable (written by an old version that was killed mid-write)
        scored = any(any(run_dir.glob(pat)) for pat in ("scores*.jsonl", "step_scores*.jsonl", "search_*.jsonl"))
        if old != fp and scored:
            old = old or {}
            raise RuntimeError(f"{run_dir} holds scores from another PRM checkpoint ({old.get('model')}, "
                               f"weights {old.get('weights')}); the PRM now is {fp.get('model')} with weights "
                               f"{fp.get('weights')}. Use another --run_name or delete the scores*.jsonl, "
                               f"step_scores*.jsonl and search_*.jsonl files.")
    # Atomic: shard jobs starting together read it while another one writes it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(fp, indent=1))
    os.replace(tmp, path)


def stage_score(cfg: EvalConfig, run_dir: Path, problems: dict[str, list], scorer, outcome_scorer,
                summary: dict) -> None:
    _check_prm_fingerprint(cfg, run_dir)
    cands = _read_merged(run_dir, "candidates")
    store = JsonlStore(run_dir / f"scores{_shard_suffix(cfg)}.jsonl")
    by_id = {record_id(bench, pr): pr for bench, prs in problems.items() for pr in prs}
    scored = {**_read_merged(run_dir, "scores"), **{k: store.get(k) for k in store.keys()}}
    # Scored means scored for the candidates on disk now (a resampled failure has new ones).
    done = {k for k, r in scored.items() if k in cands and len(r["scores"]) == len(cands[k]["candidates"])}
    todo = [pid for pid in by_id if pid in cands and pid not in done]
    t0 = time.time()
    errors = Counter()
    with tqdm(total=len(todo), desc="score", disable=not todo) as bar:
        batch: list[str] = []
        for pid in todo + [None]:  # None flushes the last batch
            if pid is not None:
                batch.append(pid)
                if sum(len(cands[x]["candidates"]) for x in batch) < SCORE_CHUNK:
                    continue
            if not batch:
                break
            samples, owners = [], []
            for x in batch:
                for i, c in enumerate(cands[x]["candidates"]):
                    samples.append(_samples_for(by_id[x], c, i))
                    owners.append(x)
            scores = scorer.score(samples) if samples else []
            outcome = outcome_scorer.score(samples) if (outcome_scorer and samples) else None
            per: dict[str, dict] = {x: {"id": x, "scores": [], "outcome": [] if outcome else None} for x in batch}
            for j, (x, s) in enumerate(zip(owners, scores)):
                per[x]["scores"].append(s.to_dict())
                if s.error:
                    errors[s.error.split(":")[0][:60]] += 1
                if outcome:
                    per[x]["outcome"].append(outcome[j].to_dict())
            for x in batch:
                store.append(per[x])
            bar.update(len(batch))
            batch = []
    store.close()
    summary["score"] = {"new": len(todo), "errors": dict(errors), "seconds": round(time.time() - t0, 1)}


def search_stem(cfg: EvalConfig, strategy: str) -> str:
    """The file stem of a strategy's results, named by every search setting that changes them
    (the rest, in a short hash), so changing one never reuses results made with another."""
    s = cfg.search
    extra = {"beam": f"_w{s.beam_width}", "dvts": f"_m{s.n_subtrees}"}.get(strategy, "")
    rest = json.dumps({"max_step_tokens": s.max_step_tokens, "final_aggregation": s.final_aggregation,
                       "threshold": s.threshold}, sort_keys=True)
    digest = hashlib.sha1(rest.encode()).hexdigest()[:6]
    return f"search_{strategy}_n{s.n}{extra}_steps{s.max_steps}_{s.aggregation}_{digest}"


def stage_search(cfg: EvalConfig, run_dir: Path, problems: dict[str, list], policy, scorer, summary: dict) -> None:
    from vlprm.answers import check_answer, extract_answer
    from vlprm.search import SearchConfig, run_search

    p, s = cfg.policy, cfg.search
    defaults = p.sampling_defaults()
    _check_prm_fingerprint(cfg, run_dir)
    summary["search"] = {}
    for strategy in s.strategies:
        sc = SearchConfig(strategy=strategy, n=s.n, beam_width=s.beam_width, n_subtrees=s.n_subtrees,
                          max_steps=s.max_steps, max_step_tokens=s.max_step_tokens, style=p.style,
                          aggregation=s.aggregation, final_aggregation=s.final_aggregation,
                          threshold=s.threshold, seed=cfg.seed, **defaults)
        store = JsonlStore(run_dir / f"{search_stem(cfg, strategy)}{_shard_suffix(cfg)}.jsonl")
        done = set(_read_merged(run_dir, search_stem(cfg, strategy))) | set(store.keys())
        todo = [(b, pr) for b, prs in problems.items() for pr in prs if record_id(b, pr) not in done]
        t0 = time.time()
        for b in tqdm(range(0, len(todo), 8), desc=strategy, disable=not todo):
            part = todo[b:b + 8]
            results = run_search([pr for _, pr in part], policy, scorer, sc)
            for (bench, pr), res in zip(part, results):
                rec = res.to_dict()
                answer = extract_answer(res.text, pr.options, pr.answer_type) if res.text else None
                rec.update(id=record_id(bench, pr), problem_id=str(pr.id), benchmark=bench, answer=answer,
                           correct=bool(answer is not None and check_answer(answer, pr, extract=False)))
                store.append(rec)
        store.close()
        summary["search"][strategy] = {"new": len(todo), "seconds": round(time.time() - t0, 1)}


# --------------------------------------------------------------------------- metrics


def _candidate_rows(cfg: EvalConfig, cands: dict, scores: dict, problems_by_id: dict) -> dict[str, dict[str, list]]:
    """{benchmark: {problem id: [candidate dicts for tts_metrics]}}."""
    from vlprm.answers import normalize_answer
    from vlprm.prm.aggregate import aggregate

    out: dict[str, dict[str, list]] = defaultdict(dict)
    # Sorted: the same numbers (to the last bit) whether the records came from one file or shards.
    for pid, rec in sorted(cands.items()):
        pr = problems_by_id.get(pid)
        if pr is None or not rec["candidates"]:
            continue
        srec = scores.get(pid)
        rows = []
        for i, c in enumerate(rec["candidates"]):
            row: dict[str, Any] = {"answer": normalize_answer(c["answer"], pr.answer_type, pr.options),
                                   "correct": c["correct"], "num_tokens": c.get("num_tokens", 0)}
            if srec is not None:
                st = srec["scores"][i]
                row["score"] = {agg: aggregate(st, agg) for agg in cfg.prm.aggregations if agg != "outcome"}
                row["prm_tokens"] = st.get("num_tokens", 0)
                if srec.get("outcome"):
                    row["score"]["outcome"] = aggregate(srec["outcome"][i], "outcome")
                    row["outcome"] = srec["outcome"][i]  # -> bon@k[vlprm_outcome], the authors' rule
                    row["prm_tokens"] += srec["outcome"][i].get("num_tokens", 0)
            rows.append(row)
        out[rec["benchmark"]][pid] = rows
    return out


def _fmt(v: Any) -> str:
    return "" if v is None else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))


def compute_metrics(cfg: EvalConfig, run_dir: Path, problems: dict[str, list]) -> dict:
    """Metrics from every shard's files; writes metrics.json, metrics.md, metrics.csv, plots."""
    from vlprm.metrics import tts_metrics

    problems_by_id = {record_id(bench, pr): pr for bench, prs in problems.items() for pr in prs}
    cands = _read_merged(run_dir, "candidates")
    scores = _read_merged(run_dir, "scores")
    rows = _candidate_rows(cfg, cands, scores, problems_by_id)
    n_max = cfg.policy.n
    results: dict[str, Any] = {"benchmarks": {}, "search": {}, "config_name": cfg.name()}
    all_rows: dict[str, list] = {}
    for bench, by_pid in sorted(rows.items()):
        complete = {pid: c for pid, c in by_pid.items() if len(c) == n_max}  # failed samples excluded
        if len(complete) < len(by_pid):
            print(f"[eval] {bench}: {len(by_pid) - len(complete)} problem(s) without {n_max} candidates "
                  f"(failed requests) are left out of the metrics", flush=True)
        by_pid = complete
        if not by_pid:
            continue
        m = tts_metrics(by_pid, seed=cfg.seed, vote_subsets="random")
        m["compute"] = _compute(by_pid)
        results["benchmarks"][bench] = m
        all_rows.update(by_pid)  # record ids already name their benchmark
    if len(results["benchmarks"]) > 1:
        m = tts_metrics(all_rows, seed=cfg.seed, vote_subsets="random")
        m["compute"] = _compute(all_rows)
        results["benchmarks"]["overall"] = m
    for strategy in cfg.search.strategies:
        recs = _read_merged(run_dir, search_stem(cfg, strategy))
        per: dict[str, list] = defaultdict(list)
        for pid, r in recs.items():
            if pid in problems_by_id:
                per[r["benchmark"]].append(r)
        if len(per) > 1:
            per["overall"] = [r for rs in list(per.values()) for r in rs]
        results["search"][strategy] = {
            b: {"accuracy": sum(r["correct"] for r in rs) / len(rs), "problems": len(rs),
                "n": cfg.search.n,
                "policy_tokens": sum(r["budget"]["policy_generated_tokens"] for r in rs) / len(rs),
                "prm_tokens": sum(r["budget"]["prm_tokens"] for r in rs) / len(rs)}
            for b, rs in sorted(per.items())}
    (run_dir / "metrics.json").write_text(json.dumps(results, indent=1, default=str))
    table = metrics_table(results)
    (run_dir / "metrics.md").write_text(table["markdown"])
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows(table["rows"])
    if cfg.plots and results["benchmarks"]:
        from vlprm.evaluation.plots import plot_accuracy_vs_n

        results["plots"] = plot_accuracy_vs_n(results, run_dir / "plots")
    return results


def _compute(by_pid: dict[str, list]) -> dict:
    """Average policy tokens generated and PRM tokens read per problem for all N candidates."""
    n = len(by_pid)
    return {"policy_tokens_per_problem": sum(c.get("num_tokens", 0) for cs in by_pid.values() for c in cs) / n,
            "prm_tokens_per_problem": sum(c.get("prm_tokens", 0) for cs in by_pid.values() for c in cs) / n}


def metrics_table(results: dict) -> dict:
    """Markdown and CSV rows: benchmark x metric x k (accuracy in %), then step search."""
    ks = sorted({k for m in results["benchmarks"].values() for k in m["ks"]})
    head = ["benchmark", "metric"] + [f"k={k}" for k in ks]
    rows = [head]
    for bench, m in results["benchmarks"].items():
        rows.append([bench, "pass@k"] + [_fmt(m["pass@k"].get(k)) for k in ks])
        rows.append([bench, "maj@k"] + [_fmt(m["maj@k"].get(k)) for k in ks])
        for agg, d in m["bon@k"].items():
            rows.append([bench, f"bon@k[{agg}]"] + [_fmt(d.get(k)) for k in ks])
        for agg, d in m["weighted@k"].items():
            rows.append([bench, f"weighted@k[{agg}]"] + [_fmt(d.get(k)) for k in ks])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    md.append("")
    md.append("Accuracy in %, each k averaged over subsets of the N sampled candidates (exact for BoN, "
              "up to 100 random subsets for votes). BoN ties are averaged, never resolved as correct.")
    if any(m.get("compute") for m in results["benchmarks"].values()):
        md += ["", "| benchmark | problems | policy tokens / problem (N) | PRM tokens / problem (N) |",
               "|---|---|---|---|"]
        for bench, m in results["benchmarks"].items():
            c = m["compute"]
            md.append(f"| {bench} | {m['counts']['problems']} | {c['policy_tokens_per_problem']:.0f} | "
                      f"{c['prm_tokens_per_problem']:.0f} |")
    if results.get("search"):
        md += ["", "| strategy | benchmark | n | accuracy | policy tokens / problem | PRM tokens / problem |",
               "|---|---|---|---|---|---|"]
        rows.append([])
        rows.append(["strategy", "benchmark", "n", "accuracy", "policy_tokens", "prm_tokens"])
        for strategy, per in results["search"].items():
            for bench, r in per.items():
                md.append(f"| {strategy} | {bench} | {r['n']} | {_fmt(r['accuracy'])} | "
                          f"{r['policy_tokens']:.0f} | {r['prm_tokens']:.0f} |")
                rows.append([strategy, bench, r["n"], _fmt(r["accuracy"]), f"{r['policy_tokens']:.0f}",
                             f"{r['prm_tokens']:.0f}"])
    return {"markdown": "\n".join(md) + "\n", "rows": rows}


# --------------------------------------------------------------------------- processbench mode


def run_processbench(cfg: EvalConfig, run_dir: Path, scorer, summary: dict) -> dict:
    """Score every step of VisualProcessBench (or any ProcessBenchSample source) and report F1."""
    from vlprm.data.benchmarks import LoadReport, load_benchmark
    from vlprm.metrics import first_error_f1, process_bench_f1
    from vlprm.prm.scorer import build_prm_sample

    shard = parse_shard(cfg.shard)
    samples = []
    for spec in cfg.benchmarks:
        if cfg.only_benchmarks and spec.name not in cfg.only_benchmarks and spec.key not in cfg.only_benchmarks:
            continue
        report = LoadReport(benchmark=spec.name, source=spec.path)
        items = load_benchmark(spec.name, spec.path, split=spec.split, limit=spec.limit, report=report,
                               on_error="skip")
        samples += [s for s in items if in_shard(str(s.id), shard)]
        summary.setdefault("load", {})[spec.key] = {"loaded": report.loaded, "skipped": len(report.skipped)}
    t0 = time.time()
    if scorer is not None:  # the score stage (a metrics-only run merges what the shards scored)
        _check_prm_fingerprint(cfg, run_dir)
        store = JsonlStore(run_dir / f"step_scores{_shard_suffix(cfg)}.jsonl")
        done = set(_read_merged(run_dir, "step_scores")) | set(store.keys())
        todo = [s for s in samples if str(s.id) not in done]
        for b in tqdm(range(0, len(todo), SCORE_CHUNK), desc="score steps", disable=not todo):
            part = todo[b:b + SCORE_CHUNK]
            res = scorer.score([build_prm_sample(s.problem, s.steps, id=str(s.id)) for s in part])
            for s, r in zip(part, res):
                store.append({"id": str(s.id), "source": s.source, "labels": s.labels, **r.to_dict()})
        store.close()
        summary["processbench_scored_new"] = len(todo)
    if "metrics" not in cfg.stages:
        return {"scored_new": summary.get("processbench_scored_new", 0), "seconds": round(time.time() - t0, 1)}
    merged = _read_merged(run_dir, "step_scores")
    recs = [r for r in merged.values() if r.get("p_plus")]
    failed = len(merged) - len(recs)
    th = cfg.prm.threshold
    f1 = process_bench_f1([r["labels"] for r in recs], [r["p_plus"] for r in recs], th,
                          [r["source"] for r in recs])
    gold_first = [next((j for j, y in enumerate(r["labels"]) if y == -1), -1) for r in recs]
    fe = first_error_f1(gold_first, [r["p_plus"] for r in recs], th)
    result = {"step_f1": f1, "first_error": fe, "scored": len(recs), "failed": failed,
              "seconds": round(time.time() - t0, 1)}
    lines = ["| source | steps | F1 (correct) | F1 (incorrect) | macro F1 |", "|---|---|---|---|---|"]
    for src, blk in list(f1["per_source"].items()) + [("overall", f1["overall"])]:
        lines.append(f"| {src} | {blk['n_steps']} | {_fmt(blk['f1_correct'])} | {_fmt(blk['f1_incorrect'])} | "
                     f"{_fmt(blk['macro_f1'])} |")
    lines += ["", f"threshold {th}; neutral steps excluded ({f1['n_neutral_steps']}); "
              f"mean of per-source macro F1: {_fmt(f1['mean_source_macro_f1'])}; "
              f"first-error F1 (ProcessBench-style): {_fmt(fe.get('f1'))}; samples scored {len(recs)}, failed {failed}"]
    (run_dir / "metrics.md").write_text("\n".join(lines) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    return result


# --------------------------------------------------------------------------- entry point


def run(cfg: EvalConfig) -> dict:
    """Run the configured stages; returns the summary (also written to summary.json)."""
    t0 = time.time()
    run_dir = Path(cfg.output_root) / cfg.name()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    print(f"[eval] run dir: {run_dir}", flush=True)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "shard": cfg.shard}
    if cfg.mode == "processbench":
        scorer = make_scorer_for(cfg, run_dir=run_dir) if "score" in cfg.stages else None
        summary["processbench"] = run_processbench(cfg, run_dir, scorer, summary)
        if "metrics" in cfg.stages:
            print((run_dir / "metrics.md").read_text())
    else:
        problems, reports = load_problems(cfg)
        summary["load"] = reports
        n_probs = sum(len(v) for v in problems.values())
        print(f"[eval] {n_probs} problems: " + ", ".join(f"{k} {len(v)}" for k, v in problems.items()), flush=True)
        # EVPV's describer / extractor / verifier default to the policy (a role without its own
        # {backend, model} uses it), so scoring with EVPV needs it too.
        evpv_needs_policy = cfg.scorer == "evpv" and "score" in cfg.stages and not all(
            cfg.evpv.get(role) for role in ("describer", "extractor", "verifier"))
        need_policy = ("sample" in cfg.stages or ("search" in cfg.stages and cfg.search.strategies)
                       or evpv_needs_policy)
        policy = make_policy(cfg) if need_policy else None
        if "sample" in cfg.stages:
            stage_sample(cfg, run_dir, problems, policy, summary)
        scorer = None
        if cfg.prm.model and ("score" in cfg.stages or ("search" in cfg.stages and cfg.search.strategies)):
            scorer = make_scorer_for(cfg, policy, run_dir)
        if "score" in cfg.stages and scorer is not None:
            outcome = make_prm_scorer(cfg, mode="outcome") if cfg.prm.outcome else None
            stage_score(cfg, run_dir, problems, scorer, outcome, summary)
        if "search" in cfg.stages and cfg.search.strategies:
            stage_search(cfg, run_dir, problems, policy, scorer, summary)
        if scorer is not None and hasattr(scorer, "summary"):
            summary["evpv"] = scorer.summary()  # requests, cache hits, unreadable replies, fallbacks
        if "metrics" in cfg.stages:
            metrics = compute_metrics(cfg, run_dir, problems)
            summary["metrics_file"] = str(run_dir / "metrics.md")
            summary["plots"] = metrics.get("plots", [])
            print((run_dir / "metrics.md").read_text())
    summary["seconds"] = round(time.time() - t0, 1)
    with open(run_dir / f"summary{_shard_suffix(cfg)}.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print("[eval] summary: " + json.dumps({k: v for k, v in summary.items() if k not in ("plots",)}, default=str))
    return summary


HELP = """usage: python eval/run_eval.py [--config YAML] [--key.sub value ...]

Test-time scaling evaluation of a policy with and without a PRM (see eval/configs/*.yaml).
Stages: sample, score, search, metrics (--stages sample,score). Every key of the config can be
overridden on the command line, e.g. --policy.n 16 --prm.model ckpt/ --search.strategies greedy,beam
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(HELP + "\nconfig keys:" + config_help(EvalConfig))
        return 0
    path = None
    for i, a in enumerate(argv):
        if a == "--config":
            if i + 1 >= len(argv):
                raise SystemExit("--config needs a YAML path")
            path, argv = argv[i + 1], argv[:i] + argv[i + 2:]
            break
        if a.startswith("--config="):
            path, argv = a.split("=", 1)[1], argv[:i] + argv[i + 1:]
            break
    cfg = load_config(EvalConfig, path, argv)
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
