"""Rollout data synthesis with real components: the tiny Qwen2.5-VL as policy (vLLM offline
engine) and as judge (vLLM's OpenAI server, and vLLM's offline batch runner), generated puzzles.

The tiny model has random weights: its answers are never right and its judge replies never
parse, which is what these tests check on the failure side (recorded, counted, the run goes
on); the happy paths of parsing and combining are covered on hand-built data in
test_labeling.py. Also: MC continuations through vLLM on a hand-written multi-step solution,
and a run killed with SIGKILL mid-stage that resumes to the same export as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlprm.data.store import read_jsonl

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "rollout_data_generation" / "configs" / "tiny.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def puzzles(tmp_path_factory):
    from vlprm.puzzles import generate_puzzles

    root = tmp_path_factory.mktemp("tiny-puzzles")
    generate_puzzles(root, 4, 0)
    return root


def overrides(tiny_model_dir, puzzles, server, out, *extra):
    return ["--out", str(out), "--data.path", str(puzzles), "--data.generate_puzzles", "null",
            "--policy.model", str(tiny_model_dir), "--judge.backend", "openai", "--judge.model", "tiny",
            "--judge.base_url", server.base_url, "--progress", "false", *extra]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, puzzles, vllm_server, tmp_path_factory):
    """An uninterrupted tiny run (per-step MC, judge over HTTP), in this process."""
    from vlprm.synthesis.pipeline import load_config, run_synthesis

    out = tmp_path_factory.mktemp("tiny-run")
    args = overrides(tiny_model_dir, puzzles, vllm_server, out)
    syn = run_synthesis(load_config(TINY, args))
    return syn, args


def sorted_records(path):
    return sorted(read_jsonl(path), key=lambda r: r["id"])


def test_end_to_end_on_the_tiny_model(tiny_run, tiny_model_dir):
    syn, _ = tiny_run
    out = syn.out
    rollouts = sorted_records(out / "rollouts.jsonl")
    assert len(rollouts) == 8 and all(r["status"] == "ok" and r["steps"] for r in rollouts)
    assert all(r["policy"] == str(tiny_model_dir) for r in rollouts)
    mc = sorted_records(out / "mc.jsonl")
    assert [r["id"] for r in mc] == [r["id"] for r in rollouts]
    for r in mc:
        assert r["status"] == "ok" and r["method"] == "per_step" and r["k"] == 2
        assert r["rollouts"] == sum(p["total"] for p in r["probes"]) > 0
    judge = sorted_records(out / "judge.jsonl")
    assert len(judge) == 8
    # Random weights: the replies cannot be parsed; each is recorded as failed with its reason
    # and the raw reply, and the run went on.
    assert all(r["status"] == "failed" and r["reason"] and r["raw"] is not None for r in judge)
    report = (out / "report.md").read_text()
    assert "| judge | 8 | 0 |" in report and "| mc | 8 | 8 |" in report
    combined = list(read_jsonl(out / "combined.jsonl"))
    assert len(combined) == 8 * 5
    assert all(not r["kept"] and r["reason"] == "judge_failed" for r in combined if r["view"] == "hybrid")

    from datasets import load_from_disk

    from vlprm.prm.format import PRMSample, encode_prm, load_prm_processor

    rows = list(read_jsonl(out / "export" / "prm.jsonl"))
    ds = load_from_disk(str(out / "export" / "hf"))
    assert len(rows) == len(ds) == 8
    proc = load_prm_processor(tiny_model_dir)
    for row in ds:
        sample = PRMSample.from_dict({**row, "images": [str(out / "export" / p) for p in row["images"]]})
        enc = encode_prm(proc, sample)
        assert enc["step_count"] == len(row["steps"]) == len(row["labels"])
        assert row["label_view"] == "mc" and row["labels"][-1] == "-"  # never right: the last step fails


def test_binary_search_from_the_same_rollouts(tiny_run, tiny_model_dir, puzzles, vllm_server, tmp_path):
    from vlprm.synthesis.pipeline import load_config, run_synthesis

    syn, _ = tiny_run
    for name in ("problems.jsonl", "rollouts.jsonl"):
        shutil.copy(syn.out / name, tmp_path / name)
    args = overrides(tiny_model_dir, puzzles, vllm_server, tmp_path, "--stages", "mc,combine,export",
                     "--mc.method", "binary_search", "--combine.views", "mc,soft")
    b = run_synthesis(load_config(TINY, args))
    per = {r["id"]: r for r in read_jsonl(syn.out / "mc.jsonl")}
    bs = sorted_records(b.out / "mc.jsonl")
    assert len(bs) == 8
    for r in bs:
        assert r["method"] == "binary_search" and r["status"] == "ok"
        assert r["rollouts"] <= per[r["id"]]["rollouts"]
        # Same prefix, same seed, same engine: the counts agree with per-step MC's.
        for p in r["probes"]:
            assert (p["correct"], p["total"]) == (per[r["id"]]["steps"][p["k"] - 1]["mc_correct"],
                                                  per[r["id"]]["steps"][p["k"] - 1]["mc_total"])
    assert (b.out / "export" / "prm.jsonl").exists()


def test_mc_continuations_through_vllm(tiny_run, tiny_model_dir, puzzles, tmp_path):
    """Multi-step hand-written solutions (the random policy writes one step): continuation
    requests render and run in vLLM, one generate() call per round, failures recorded."""
    from vlprm.backends import SamplingConfig, make_generator
    from vlprm.data.benchmarks import load_benchmark
    from vlprm.data.schema import Solution, Step
    from vlprm.synthesis.mc import Prober, per_step
    from vlprm.synthesis.omegaprm import binary_search

    gen = make_generator("vllm", str(tiny_model_dir), max_model_len=4096)  # the cached engine

    class Counting:
        calls: list[int] = []

        def generate(self, requests, sampling, **kw):
            self.calls.append(len(requests))
            return gen.generate(requests, sampling, **kw)

    probs = load_benchmark("puzzles", puzzles)[:2]
    steps = [Step("The image shows a grid.", "perception"), Step("The top row is red.", "perception"),
             Step("So the answer follows the pattern.", "reasoning"), Step("Therefore \\boxed{A}.", "reasoning")]
    pairs = [(p, Solution(f"{p.id}#0", p.id, "hand", "", steps=steps, final_answer="Z", correct=False))
             for p in probs]
    broken = dataclasses.replace(probs[0], images=[str(tmp_path / "missing.png")])
    pairs.append((broken, Solution(f"{probs[0].id}#9", probs[0].id, "hand", "", steps=steps, final_answer=None)))
    c = Counting()
    sampling = SamplingConfig(temperature=1.0, max_tokens=16)
    res = per_step(pairs, Prober(c, 3, sampling, progress=False))
    assert c.calls == [3 + 3 + 4]  # every prefix of every solution in one call (last step known for 2)
    for r in res[:2]:
        assert r.status == "ok" and [p.k for p in r.probes] == [1, 2, 3]
        assert all(p.total == 3 for p in r.probes) and r.evidence[-1].extra["mc_source"] == "final_answer"
    assert res[2].status == "failed" and "cannot read image" in res[2].detail
    c.calls.clear()
    res = binary_search(pairs, Prober(c, 3, sampling, progress=False))
    assert c.calls and c.calls[0] == 3 and all(n <= 3 for n in c.calls) and len(c.calls) <= 3
    assert [r.status for r in res] == ["ok", "ok", "failed"]
    assert all(r.first_error_step is not None for r in res[:2])  # random policy: the prefix dies at once


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_kill_mid_stage_then_resume_equals_uninterrupted(tiny_run, tiny_model_dir, puzzles, vllm_server, tmp_path):
    syn, _ = tiny_run
    out = tmp_path / "killed"
    args = overrides(tiny_model_dir, puzzles, vllm_server, out)
    cmd = [sys.executable, str(REPO / "rollout_data_generation" / "run.py"), "--config", str(TINY), *args]
    log = open(tmp_path / "killed.log", "w")
    p = subprocess.Popen(cmd + ["--item_delay", "0.4"], stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd=REPO)
    deadline = time.time() + 240
    while _lines(out / "mc.jsonl") < 2:
        assert p.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.time() < deadline, "the run never reached the mc stage"
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    log.close()
    n_mc = len(list(read_jsonl(out / "mc.jsonl")))  # whole records (a torn last line is dropped)
    assert 1 <= n_mc < 8, "kill landed outside the mc stage"
    assert not (out / "judge.jsonl").exists() and not (out / "export").exists()
    # Resume (in this process: its engine is already up; the subprocess above tested the CLI).
    from vlprm.synthesis.pipeline import load_config, run_synthesis

    resumed = run_synthesis(load_config(TINY, args))
    by = {s.name: s for s in resumed.summaries}
    assert by["rollouts"].done_before == 8 and by["rollouts"].written == 0
    assert by["mc"].done_before == n_mc and by["mc"].written == 8 - n_mc
    for name in ("rollouts.jsonl", "mc.jsonl", "judge.jsonl"):
        got = list(read_jsonl(out / name))
        assert len(got) == len({r["id"] for r in got}) == 8, f"{name}: duplicates or losses"
        assert sorted(got, key=lambda r: r["id"]) == sorted_records(syn.out / name), name
    for name in ("combined.jsonl", "export/prm.jsonl"):
        assert (out / name).read_bytes() == (syn.out / name).read_bytes(), name
    from datasets import load_from_disk

    hf = lambda run: load_from_disk(str(run / "export" / "hf")).to_list()  # noqa: E731
    assert hf(out) == hf(syn.out)


def test_judge_batch_mode_through_vllm_batch_runner(tiny_run, tiny_model_dir, puzzles, vllm_server, tmp_path):
    """judge.mode batch writes the OpenAI batch file, vLLM's offline runner answers it, the
    replies are read back: same request keys (and, at temperature 0, the same replies) as the
    online judge."""
    from vlprm.synthesis.pipeline import load_config, run_synthesis

    syn, _ = tiny_run
    for name in ("problems.jsonl", "rollouts.jsonl"):
        shutil.copy(syn.out / name, tmp_path / name)
    args = overrides(tiny_model_dir, puzzles, vllm_server, tmp_path, "--stages", "judge", "--judge.mode", "batch",
                     "--judge.batch_runner", "vllm", "--judge.batch_model_path", str(tiny_model_dir),
                     "--judge.max_model_len", "4096")
    run_synthesis(load_config(TINY, args))
    batch_in = [json.loads(x) for x in (tmp_path / "judge_batch" / "input.jsonl").read_text().splitlines()]
    assert len(batch_in) == len({r["custom_id"] for r in batch_in}) >= 1
    assert all(r["method"] == "POST" and r["url"] == "/v1/chat/completions" and r["body"]["model"] == "tiny"
               for r in batch_in)
    out_lines = [json.loads(x) for x in (tmp_path / "judge_batch" / "output.vllm.jsonl").read_text().splitlines()]
    assert {r["custom_id"] for r in out_lines} == {r["custom_id"] for r in batch_in}
    assert all(r["response"]["status_code"] == 200 for r in out_lines)
    got = sorted_records(tmp_path / "judge.jsonl")
    online = sorted_records(syn.out / "judge.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in online]
    assert [r["cache_key"] for r in got] == [r["cache_key"] for r in online]
    assert all(r["status"] == "failed" and r["raw"] is not None for r in got)
    assert [r["raw"] for r in got] == [r["raw"] for r in online]
