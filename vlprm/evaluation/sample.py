"""Evaluation stage 1: N_max candidate solutions per problem, sampled once.

One record per problem, keyed "<benchmark>/<problem id>":
    {"id", "problem_id", "benchmark", "status": "ok" | "failed", "reason", "detail",
     "prompt_tokens", "candidates": [Solution.to_dict(), ...]}
Every problem gets a record: a failed request (an unreadable image, an HTTP error) is a failed
record with its reason, counted wrong by the metrics and retried with --retry_failed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from vlprm.data.schema import Solution, Step, solution_id
from vlprm.runs import StageSummary, chunks, classify_error, is_done, is_failed, read_stage, stage_file

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig


def record_id(bench: str, problem) -> str:
    """The key of a problem's records: problem ids are unique only within a benchmark
    (MathVista and MathVision both number theirs 1, 2, ...)."""
    return f"{bench}/{problem.id}"


def candidate_solutions(rec: dict) -> list[Solution]:
    """The candidates of a record as `Solution`s; reads the old layout's candidate dicts too
    ({"index", "text", "steps": [str], "kinds", "answer", "correct", ...})."""
    out = []
    for i, c in enumerate(rec.get("candidates") or []):
        if "final_answer" in c or ("steps" in c and c["steps"] and isinstance(c["steps"][0], dict)):
            out.append(Solution.from_dict(c))
            continue
        kinds = c.get("kinds") or ["reasoning"] * len(c.get("steps") or [])
        out.append(Solution(id=solution_id(rec.get("problem_id", rec["id"]), c.get("index", i)),
                            problem_id=str(rec.get("problem_id", rec["id"])), policy="", text=c.get("text") or "",
                            steps=[Step(text=t, kind=k) for t, k in zip(c.get("steps") or [], kinds)],
                            final_answer=c.get("answer"), correct=bool(c.get("correct")),
                            metadata={"index": c.get("index", i), "num_tokens": c.get("num_tokens"),
                                      "finish_reason": c.get("finish_reason")}))
    return out


def sample_record(bench: str, problem, result, cfg: "EvalConfig") -> dict[str, Any]:
    """The candidates record of one problem's generation result."""
    from vlprm.sampling import parse_solution

    p = cfg.policy
    rec: dict[str, Any] = {"id": record_id(bench, problem), "problem_id": str(problem.id), "benchmark": bench,
                           "status": "ok", "reason": None, "detail": None,
                           "prompt_tokens": result.prompt_tokens, "candidates": []}
    if not result.ok:
        rec.update(status="failed", reason=classify_error(result.error), detail=result.error)
        return rec
    for i, c in enumerate(result.completions):
        sol = parse_solution(problem, i, c.text, policy=p.model, style=p.style, max_steps=p.max_steps,
                             finish_reason=c.finish_reason, num_tokens=c.num_tokens)
        rec["candidates"].append(sol.to_dict())
    if not rec["candidates"]:
        rec.update(status="failed", reason="no_completion", detail="the backend returned no completion")
    return rec


def stage_sample(cfg: "EvalConfig", run_dir: Path, problems: dict[str, list], policy) -> StageSummary:
    """Sample every problem not done in any file of the run (another shard layout, an unsharded
    run): never sampled twice. A failed record is done unless retry_failed."""
    from vlprm.data.store import JsonlStore
    from vlprm.sampling import rollout_request

    p = cfg.policy
    summ = StageSummary("sample")
    store = JsonlStore(stage_file(run_dir, "candidates", cfg.tag()))
    merged = read_stage(run_dir, "candidates")
    every = [(bench, pr) for bench, prs in problems.items() for pr in prs]
    todo = [(b, pr) for b, pr in every if not is_done(merged.get(record_id(b, pr)), cfg.retry_failed)]
    summ.done_before = len(every) - len(todo)
    summ.failed_before = sum(1 for b, pr in every if not cfg.retry_failed
                             and is_failed(merged.get(record_id(b, pr)) or {"status": "ok"}))
    t0 = time.time()
    sampling = p.sampling()
    with tqdm(total=len(todo), desc="sample", disable=not todo) as bar:
        for part in chunks(todo, p.batch_problems):  # a kill loses at most one chunk of generation
            reqs = [rollout_request(pr, style=p.style, seed=cfg.seed) for _, pr in part]
            results = policy.generate(reqs, sampling, progress=False)
            for (bench, pr), res in zip(part, results):
                rec = sample_record(bench, pr, res, cfg)
                store.append(rec)
                summ.count(rec)
            bar.update(len(part))
    store.close()
    summ.seconds = time.time() - t0
    return summ
