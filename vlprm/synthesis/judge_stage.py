"""Synthesis stage 3: a VLM judge reviews every usable solution, step by step.

Online (the judge generator answers now) or batch (requests go to OUT/judge_batch/input.jsonl
for a batch API, or through vLLM's offline batch runner, and replies are read back from
output.jsonl). Replies are cached by request content, so a resumed run asks nothing twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from vlprm.data.schema import Solution
from vlprm.runs import StageSummary, chunks

if TYPE_CHECKING:
    from vlprm.synthesis.pipeline import Synthesis

log = logging.getLogger(__name__)


def stage_judge(syn: "Synthesis") -> StageSummary:
    """A VLM judge's per-step review of every usable solution -> judge.jsonl (online, or
    through a batch file)."""
    from vlprm.backends import ImageLoadError, SamplingConfig
    from vlprm.runs import classify_error
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
        """Record every pending solution whose reply is known; return bodies still to submit."""
        to_submit: dict[str, dict] = {}
        todo = [s for s in sols if not store.done(s.id)]
        for chunk in tqdm(chunks(todo, j.batch_size), desc="judge", disable=not syn.cfg.progress):
            asks: list[tuple[Solution, Any, str]] = []  # (solution, request, key)
            for sol in chunk:
                prob = problems[sol.problem_id]
                req = J.judge_request(prob, sol, seed=syn.cfg.seed, show_reference=j.show_reference)
                try:
                    body = J.request_body(j.model, req, sampling)
                except (ImageLoadError, OSError) as e:
                    write(J.judge_record(prob, sol, model=j.model, key=None, text=None, error=str(e),
                                         error_reason="image_unreadable"))
                    continue
                key = J.request_key(body)
                text = cache.get(key)
                if text is not None:
                    write(J.judge_record(prob, sol, model=j.model, key=key, text=text))
                elif key in batch_errors:
                    write(J.judge_record(prob, sol, model=j.model, key=key, text=None, error=batch_errors[key],
                                         error_reason="batch_error"))
                elif j.mode == "batch":
                    to_submit[key] = body
                else:
                    asks.append((sol, req, key))
            if asks:
                uniq: dict[str, Any] = {}
                for _, req, key in asks:
                    uniq.setdefault(key, req)
                keys = list(uniq)
                results = syn.judge_generator().generate([uniq[k] for k in keys], sampling,
                                                          progress=False, desc="judge")
                by_key = dict(zip(keys, results))
                for k, res in by_key.items():
                    if res.ok and res.completions:
                        cache.put(k, res.completions[0].text, j.model)
                for sol, _, key in asks:
                    res = by_key[key]
                    prob = problems[sol.problem_id]
                    if res.ok and res.completions:
                        write(J.judge_record(prob, sol, model=j.model, key=key, text=res.completions[0].text))
                    else:
                        err = res.error or "no completion returned"
                        write(J.judge_record(prob, sol, model=j.model, key=key, text=None, error=err,
                                             error_reason=classify_error(err)))
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
