"""Evaluation stage 2: P(+) of every step of every candidate, and the guard that keeps one PRM's
scores from mixing with another's.

    scores[<tag>].jsonl   {"id", "scores": [StepScores dict per candidate], "outcome": [...] | null}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from vlprm.evaluation.sample import candidate_solutions, record_id
from vlprm.runs import StageSummary, classify_error, read_stage, stage_file

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig


def prm_sample(problem, sol, index: int):
    """The PRM input of one candidate (its steps; the whole text when it has none)."""
    from vlprm.prm.scorer import build_prm_sample

    steps = [s.text for s in sol.steps] or [sol.text or "(empty)"]
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


def check_prm_fingerprint(cfg: "EvalConfig", run_dir: Path) -> None:
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


def stage_score(cfg: "EvalConfig", run_dir: Path, problems: dict[str, list], scorer, outcome_scorer) -> StageSummary:
    """Score every candidate not scored yet (scored = scored for the candidates on disk now:
    a resampled failure has new ones). Failed sampling records have nothing to score."""
    from vlprm.data.store import JsonlStore

    check_prm_fingerprint(cfg, run_dir)
    summ = StageSummary("score")
    cands = {k: candidate_solutions(r) for k, r in read_stage(run_dir, "candidates").items()}
    store = JsonlStore(stage_file(run_dir, "scores", cfg.tag()))
    by_id = {record_id(bench, pr): pr for bench, prs in problems.items() for pr in prs}
    scored = read_stage(run_dir, "scores")
    done = {k for k, r in scored.items() if k in cands and len(r["scores"]) == len(cands[k])}
    todo = [pid for pid in by_id if cands.get(pid) and pid not in done]
    summ.done_before = len(done & set(by_id))
    chunk = max(1, cfg.prm.batch_size) * 8  # candidates per scorer call between checkpoints
    t0 = time.time()
    with tqdm(total=len(todo), desc="score", disable=not todo) as bar:
        batch: list[str] = []
        for pid in todo + [None]:  # None flushes the last batch
            if pid is not None:
                batch.append(pid)
                if sum(len(cands[x]) for x in batch) < chunk:
                    continue
            if not batch:
                break
            samples, owners = [], []
            for x in batch:
                for i, sol in enumerate(cands[x]):
                    samples.append(prm_sample(by_id[x], sol, i))
                    owners.append(x)
            scores = scorer.score(samples) if samples else []
            outcome = outcome_scorer.score(samples) if (outcome_scorer and samples) else None
            per = {x: {"id": x, "scores": [], "outcome": [] if outcome else None} for x in batch}
            for j, (x, s) in enumerate(zip(owners, scores)):
                per[x]["scores"].append(s.to_dict())
                if s.error:
                    summ.failed[classify_error(s.error)] += 1
                if outcome:
                    per[x]["outcome"].append(outcome[j].to_dict())
            for x in batch:
                store.append(per[x])
                summ.written += 1
            bar.update(len(batch))
            batch = []
    store.close()
    summ.seconds = time.time() - t0
    return summ
