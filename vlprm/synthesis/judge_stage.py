"""Synthesis stage 3: a VLM judge reviews every usable solution, step by step.

Online (the judge generator answers now) or batch (requests go to OUT/judge_batch/input.jsonl
for a batch API, or through vLLM's offline batch runner, and replies are read back from
output.jsonl). Replies are cached by request content, so a resumed run asks nothing twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from vlprm.runs import StageSummary, chunks

if TYPE_CHECKING:
    from vlprm.synthesis.pipeline import Synthesis

log = logging.getLogger(__name__)


def stage_judge(syn: "Synthesis") -> StageSummary:
    """A VLM judge's per-step review of every usable solution -> judge.jsonl (online, or
    through a batch file)."""
    from vlprm.backends import SamplingConfig
    from vlprm.synthesis import judge as J

    j = syn.cfg.judge
    summ = StageSummary("judge", note=f"{j.backend}:{j.model}, mode {j.mode}")
    store = syn.stage_store("judge")
    cache_path = None
    if j.cache:
        # One cache per shard job: concurrent jobs never append to one file.
        cache_name = j.cache[:-len(".jsonl")] + syn.tag + ".jsonl" if j.cache.endswith(".jsonl") else j.cache + syn.tag
        cache_path = Path(j.cache) if os.path.isabs(j.cache) else syn.out / cache_name
    cache = J.ReplyCache(cache_path)
    problems = {pr.id: pr for pr in syn.problems}
    sols = syn.solutions()
    summ.done_before = sum(store.done(s.id) for s in sols)
    summ.failed_before = sum(store.failed_before(s.id) for s in sols)
    sampling = SamplingConfig(n=1, temperature=j.temperature, max_tokens=j.max_tokens)
    batch_dir = syn.out / f"judge_batch{syn.tag}"

    def write(rec: dict) -> None:
        store.append(rec)
        summ.count(rec)
        syn.delay()

    def one_pass(batch_errors: dict[str, str]) -> dict[str, dict]:
        """Record every pending solution whose reply is known (or asked now, online); return the
        request bodies still to submit (batch)."""
        online = j.mode == "online"
        calls = cache.calls(None, j.model, sampling, make_generator=syn.judge_generator if online else None)
        to_submit: dict[str, dict] = {}
        todo = [s for s in sols if not store.done(s.id)]
        for chunk in tqdm(chunks(todo, j.batch_size), desc="judge", disable=not syn.cfg.progress):
            recs, submit = J.judge_solutions([(problems[s.problem_id], s) for s in chunk], calls, seed=syn.cfg.seed,
                                             show_reference=j.show_reference, online=online,
                                             batch_errors=batch_errors)
            for rec in recs:
                write(rec)
            to_submit.update(submit)
        return to_submit

    def ingest(path: Path) -> dict[str, str]:
        errors = {}
        for key, (text, err) in J.read_batch_output(path).items():
            if text is not None:
                cache.put(key, text, j.model)
            else:
                errors[key] = err
        return errors

    out_path = batch_dir / "output.jsonl"
    errors = ingest(out_path) if j.mode == "batch" and out_path.exists() else {}
    to_submit = one_pass(errors)
    if to_submit:
        in_path = batch_dir / "input.jsonl"
        J.write_batch_file(in_path, to_submit)
        if j.batch_runner == "vllm":
            log.info("running vLLM's batch runner on %d requests (%s)", len(to_submit), in_path)
            run_out = batch_dir / "output.vllm.jsonl"
            J.run_vllm_batch(in_path, run_out, j.batch_model_path or j.model, j.model,
                             max_model_len=j.max_model_len, log_path=batch_dir / "run_batch.log")
            errors.update(ingest(run_out))
            to_submit = one_pass(errors)
        if to_submit:
            summ.note += (f"; {len(to_submit)} requests wait in {in_path}: submit them to a batch API, save the "
                          f"results as {out_path} and rerun with --stages judge,combine,export")
    cache.close()
    store.close()
    return summ
