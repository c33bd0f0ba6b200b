"""Test-time scaling evaluation: sample once, score, search, and compute every metric.

Stages (each resumable, each an append-only JSONL keyed by "<benchmark>/<problem id>", each
runnable alone), on the run layer (`vlprm.runs`):

1. sample   N_max candidates per problem (`Solution` records), one request with n=N_max and a
            seed from (seed, problem id); a failed request is a failed record. -> candidates
2. score    P(+) of every step of every candidate with the PRM (or EVPV-gated P(+)), plus an
            outcome score per candidate when prm.outcome. -> scores
3. search   step-level strategies (greedy, beam, DVTS) guided by the PRM.
            -> search_<strategy>_<settings>
4. metrics  pass@k, BoN@k (per aggregation), weighted@k, maj@k for every k = 1, 2, 4, ... N_max
            from the same candidates, per benchmark and overall, every loaded problem counted;
            step search accuracy and compute; tables (markdown + CSV) and plots. Reads every
            job's files, so running it after all shards finish is the merge step.

A job's files are named by its benchmarks (--only_benchmarks) and shard (--shard i/n), so
concurrent jobs never write one file. processbench mode scores every step of VisualProcessBench
and reports F1 per data source. RUN/skipped.jsonl lists every skipped problem and failed record.

    python eval/run_eval.py --config eval/configs/tiny.yaml --policy.n 8
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from vlprm.evaluation.config import EvalConfig
from vlprm.evaluation.problems import load_problems
from vlprm.evaluation.sample import record_id, stage_sample
from vlprm.evaluation.scoring import check_prm_fingerprint, prm_fingerprint, stage_score
from vlprm.evaluation.search_stage import search_stem, stage_search
from vlprm.evaluation.tables import compute_metrics, metrics_table
from vlprm.runs import (StageSummary, failed_entries, format_summary, prepare_run_dir, read_stage,
                        stage_file, write_skipped)

log = logging.getLogger(__name__)

__all__ = ["run", "main", "make_policy", "make_prm_scorer", "make_scorer_for", "load_problems", "record_id",
           "search_stem", "compute_metrics", "metrics_table", "prm_fingerprint", "check_prm_fingerprint"]


def make_policy(cfg: EvalConfig):
    """The policy generator (the policy section's backend; the run's seed for the engine)."""
    from vlprm.backends import generator_for

    return generator_for(cfg.policy, seed=cfg.seed)


def make_prm_scorer(cfg: EvalConfig, *, mode: str = "one_pass"):
    """The PRM scorer of the prm section."""
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
    if cfg.scorer != "evpv":
        return base
    from vlprm.evpv import build_evpv_scorer

    evpv_cfg = cfg.evpv
    if run_dir is not None and not evpv_cfg.cache_dir:
        # One cache per shard / benchmark job: concurrent jobs never append to one file.
        evpv_cfg = dataclasses.replace(evpv_cfg, cache_dir=str(run_dir / f"evpv_cache{cfg.tag()}"))
    return build_evpv_scorer(evpv_cfg, base_scorer=base, generator=policy)


def _needs_policy(cfg: EvalConfig) -> bool:
    # EVPV's describer / extractor / verifier default to the policy (a role without its own
    # {backend, model} uses it), so scoring with EVPV needs it too.
    evpv_needs_policy = cfg.scorer == "evpv" and "score" in cfg.stages and not all(
        getattr(cfg.evpv, role) for role in ("describer", "extractor", "verifier"))
    return "sample" in cfg.stages or ("search" in cfg.stages and bool(cfg.search.strategies)) or evpv_needs_policy


def _run_tts(cfg: EvalConfig, run_dir: Path, problems: dict[str, list], summary: dict) -> list[StageSummary]:
    stages: list[StageSummary] = []
    policy = make_policy(cfg) if _needs_policy(cfg) else None
    if "sample" in cfg.stages:
        stages.append(stage_sample(cfg, run_dir, problems, policy))
        summary["sample"] = stages[-1].to_dict()
    wants_search = "search" in cfg.stages and bool(cfg.search.strategies)
    scorer = None
    if cfg.prm.model and ("score" in cfg.stages or wants_search):
        scorer = make_scorer_for(cfg, policy, run_dir)
    if "score" in cfg.stages and scorer is not None:
        outcome = make_prm_scorer(cfg, mode="outcome") if cfg.prm.outcome else None
        stages.append(stage_score(cfg, run_dir, problems, scorer, outcome))
        summary["score"] = stages[-1].to_dict()
    if wants_search:
        per = stage_search(cfg, run_dir, problems, policy, scorer)
        stages += list(per.values())
        summary["search"] = {k: v.to_dict() for k, v in per.items()}
    if scorer is not None and hasattr(scorer, "summary"):
        summary["evpv"] = scorer.summary()  # requests, cache hits, unreadable replies, fallbacks
    if "metrics" in cfg.stages:
        metrics = compute_metrics(cfg, run_dir, problems)
        summary["metrics_file"] = str(run_dir / "metrics.md")
        summary["plots"] = metrics.get("plots", [])
        print((run_dir / "metrics.md").read_text(), flush=True)
    return stages


def _failed_sampling(cfg: EvalConfig, run_dir: Path, problems: dict[str, list]) -> list[dict]:
    """skipped.jsonl entries of this job's problems whose sampling failed."""
    ids = {record_id(b, pr) for b, prs in problems.items() for pr in prs}
    recs = [r for k, r in sorted(read_stage(run_dir, "candidates").items()) if k in ids]
    return failed_entries(recs, "sample", str(stage_file(run_dir, "candidates", cfg.tag())))


def run(cfg: EvalConfig) -> dict:
    """Run the configured stages; returns the summary (also written to summary.json)."""
    from vlprm.config import to_yaml

    t0 = time.time()
    run_dir = prepare_run_dir(Path(cfg.output_root) / cfg.name(), "output_root")
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    log.info("run dir: %s", run_dir)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "shard": cfg.shard}
    problems, summary["load"], skipped = load_problems(cfg)
    log.info("%d problems: %s", sum(len(v) for v in problems.values()),
             ", ".join(f"{k} {len(v)}" for k, v in problems.items()))
    if cfg.mode == "processbench":
        from vlprm.evaluation.processbench import run_processbench

        scorer = make_scorer_for(cfg, run_dir=run_dir) if "score" in cfg.stages else None
        samples = [s for items in problems.values() for s in items]
        summary["processbench"], summ = run_processbench(cfg, run_dir, samples, scorer)
        stages = [summ] if summ else []
        if "metrics" in cfg.stages:
            print((run_dir / "metrics.md").read_text(), flush=True)
    else:
        stages = _run_tts(cfg, run_dir, problems, summary)
        skipped += _failed_sampling(cfg, run_dir, problems)
    summary["skipped_file"] = str(write_skipped(run_dir, skipped, cfg.tag()))
    summary["seconds"] = round(time.time() - t0, 1)
    with open(run_dir / f"summary{cfg.tag()}.json", "w") as f:
        from vlprm.secrets import redact_obj

        json.dump(redact_obj(summary), f, indent=1, default=str)  # no key echoed into an error reaches it
    print(format_summary(f"evaluation summary ({run_dir}):", stages, summary["seconds"],
                         [f"skipped and failed records: {summary['skipped_file']} ({len(skipped)})"]), flush=True)
    return summary


HELP = """usage: python eval/run_eval.py [--config YAML] [--key.sub value ...]

Test-time scaling evaluation of a policy with and without a PRM (see eval/configs/*.yaml).
Stages: sample, score, search, metrics (--stages sample,score). Every key of the config can be
overridden on the command line, e.g. --policy.n 16 --prm.model ckpt/ --search.strategies greedy,beam
Failed records stay failed on a rerun; --retry_failed retries them.
"""


def main(argv: Sequence[str] | None = None) -> int:
    from vlprm.runs import cli_main

    return cli_main(EvalConfig, argv, run, HELP)


if __name__ == "__main__":
    import sys

    sys.exit(main())
