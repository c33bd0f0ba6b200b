"""Evaluation stage 3: step-level search (greedy, beam, DVTS) guided by the PRM.

    search_<strategy>_<settings>[<tag>].jsonl   one record per problem (answer, correct, budget)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from vlprm.evaluation.sample import record_id
from vlprm.evaluation.scoring import check_prm_fingerprint
from vlprm.runs import StageSummary, chunks, read_stage, stage_file

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig


def search_stem(cfg: "EvalConfig", strategy: str) -> str:
    """The file stem of a strategy's results, named by every search setting that changes them
    (the rest, in a short hash), so changing one never reuses results made with another."""
    s = cfg.search
    extra = {"beam": f"_w{s.beam_width}", "dvts": f"_m{s.n_subtrees}"}.get(strategy, "")
    rest = {"max_step_tokens": s.max_step_tokens, "final_aggregation": s.final_aggregation, "threshold": s.threshold}
    if s.choice != "max_score":  # the default leaves earlier runs' file names unchanged
        rest["choice"] = s.choice
    rest = json.dumps(rest, sort_keys=True)
    digest = hashlib.sha1(rest.encode()).hexdigest()[:6]
    return f"search_{strategy}_n{s.n}{extra}_steps{s.max_steps}_{s.aggregation}_{digest}"


def stage_search(cfg: "EvalConfig", run_dir: Path, problems: dict[str, list], policy, scorer) -> dict[str, StageSummary]:
    """Run every configured strategy on the problems it has no record for; one summary each."""
    from vlprm.answers import check_answer, extract_answer
    from vlprm.data.store import JsonlStore
    from vlprm.search import run_search

    check_prm_fingerprint(cfg, run_dir)
    out = {}
    for strategy in cfg.search.strategies:
        sc = cfg.search.search_config(strategy, cfg.policy, cfg.seed)
        stem = search_stem(cfg, strategy)
        store = JsonlStore(stage_file(run_dir, stem, cfg.tag()))
        done = set(read_stage(run_dir, stem))
        every = [(b, pr) for b, prs in problems.items() for pr in prs]
        todo = [(b, pr) for b, pr in every if record_id(b, pr) not in done]
        summ = StageSummary(f"search {strategy}", done_before=len(every) - len(todo))
        t0 = time.time()
        for part in tqdm(chunks(todo, cfg.policy.batch_problems), desc=strategy, disable=not todo):
            results = run_search([pr for _, pr in part], policy, scorer, sc)
            for (bench, pr), res in zip(part, results):
                rec = res.to_dict()
                answer = extract_answer(res.text, pr.options, pr.answer_type) if res.text else None
                rec.update(id=record_id(bench, pr), problem_id=str(pr.id), benchmark=bench, answer=answer,
                           correct=bool(answer is not None and check_answer(answer, pr, extract=False)))
                store.append(rec)
                summ.count(rec)
        store.close()
        summ.seconds = time.time() - t0
        out[strategy] = summ
    return out
