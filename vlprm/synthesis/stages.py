"""Synthesis stages 1 and 2: policy rollouts and Monte Carlo step evidence, on the run layer.

Each stage function takes the running `Synthesis` (config, run dir, problems, generators) and
returns its `StageSummary`. Work goes out in fixed chunks from the config; a chunk that was cut
short by a kill is regenerated whole and only its missing records are written, so the engine
sees the same batches as an uninterrupted run and, with per-request seeds, writes the same
records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from vlprm.data.schema import Problem, solution_id
from vlprm.runs import StageSummary, chunks

if TYPE_CHECKING:
    from vlprm.synthesis.pipeline import Synthesis


def stage_rollouts(syn: "Synthesis") -> StageSummary:
    """N policy solutions per problem -> rollouts.jsonl (failed ones with their reason)."""
    from vlprm.sampling import rollout_request
    from vlprm.synthesis.rollouts import rollout_records

    p = syn.cfg.policy
    summ = StageSummary("rollouts")
    store = syn.stage_store("rollouts")

    def pending(prob: Problem) -> list[str]:
        return [sid for sid in (solution_id(prob.id, i) for i in range(p.n)) if not store.done(sid)]

    all_ids = [solution_id(prob.id, i) for prob in syn.problems for i in range(p.n)]
    summ.done_before = sum(store.done(sid) for sid in all_ids)
    summ.failed_before = sum(store.failed_before(sid) for sid in all_ids)
    sampling = p.sampling()
    with tqdm(total=len(syn.problems), desc="rollouts", disable=not syn.cfg.progress) as bar:
        for chunk in chunks(syn.problems, p.batch_problems):
            todo = {prob.id: pending(prob) for prob in chunk}
            if not any(todo.values()):
                bar.update(len(chunk))
                continue
            reqs = [rollout_request(prob, style=p.style, seed=syn.cfg.seed) for prob in chunk]
            results = syn.policy().generate(reqs, sampling, progress=False, desc="policy")
            for prob, res in zip(chunk, results):
                want = set(todo[prob.id])
                for rec in rollout_records(prob, res, p.n, policy=p.model, style=p.style, max_steps=p.max_steps,
                                           seed=syn.cfg.seed, drop_truncated=p.drop_truncated):
                    if rec["id"] in want:
                        store.append(rec)
                        summ.count(rec)
                        syn.delay()
                bar.update(1)
    store.close()
    return summ


def stage_mc(syn: "Synthesis") -> StageSummary:
    """Monte Carlo evidence per step (per_step | binary_search) -> mc.jsonl."""
    from vlprm.synthesis.mc import Prober, per_step
    from vlprm.synthesis.omegaprm import binary_search

    m, p = syn.cfg.mc, syn.cfg.policy
    summ = StageSummary("mc", note=f"method {m.method}, K={m.k}")
    store = syn.stage_store("mc")
    problems = {pr.id: pr for pr in syn.problems}
    sols = syn.solutions()
    summ.done_before = sum(store.done(s.id) for s in sols)
    summ.failed_before = sum(store.failed_before(s.id) for s in sols)
    sampling = p.sampling(n=1, temperature=m.temperature, max_tokens=m.max_tokens)
    rollouts = 0
    with tqdm(total=len(sols), desc=f"mc ({m.method})", disable=not syn.cfg.progress) as bar:
        for chunk in chunks(sols, m.batch_solutions):
            want = {s.id for s in chunk if not store.done(s.id)}
            if not want:
                bar.update(len(chunk))
                continue
            prober = Prober(syn.policy(), m.k, sampling, style=p.style, seed=syn.cfg.seed, progress=False)
            pairs = [(problems[s.problem_id], s) for s in chunk]
            if m.method == "per_step":
                results = per_step(pairs, prober, early_stop=m.early_stop,
                                   last_step_from_answer=m.last_step_from_answer)
            else:
                results = binary_search(pairs, prober, last_step_from_answer=m.last_step_from_answer)
            for res in results:
                if res.solution_id in want:
                    rec = res.to_record()
                    store.append(rec)
                    summ.count(rec)
                    rollouts += res.rollouts
                    syn.delay()
            bar.update(len(chunk))
    store.close()
    summ.note += f", {rollouts} continuations this run"
    return summ
