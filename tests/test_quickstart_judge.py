"""The quickstart exercises the paper's method: the tiny judge (the tiny policy warmed up on
judge replies) answers the synthesis judge stage in a format the parser reads, so the judge, hybrid and
consensus label views have data and the export uses the hybrid view. The judge examples it is
trained on parse to the first error they were built with."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from vlprm.data.store import read_jsonl

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("VLPRM_CACHE", REPO / ".cache"))


def test_judge_examples_parse_to_their_injected_first_error(tmp_path):
    from vlprm.data.benchmarks import load_benchmark
    from vlprm.models.tiny_judge import judge_chat, judge_example
    from vlprm.puzzles import generate_puzzles
    from vlprm.synthesis.judge import parse_judge_reply

    generate_puzzles(tmp_path, 40, seed=3)
    problems = load_benchmark("puzzles", tmp_path)
    rng = random.Random(0)
    kinds = {"none": 0, "last": 0, "earlier": 0}
    for p in problems:
        steps, first = judge_example(p, problems, rng)
        msgs = judge_chat(p, steps, first)
        assert msgs[-2]["content"][-1]["text"].count("\n\nStep ") == len(steps) - 1  # the judge prompt
        reply = parse_judge_reply(msgs[-1]["content"][0]["text"], len(steps))
        assert reply.ok and reply.first_error_step == first
        kinds["none" if first is None else "last" if first == len(steps) else "earlier"] += 1
        if first is not None and first < len(steps):  # a fact swapped in from another puzzle
            assert steps[first - 1].kind == "perception"
            assert steps[first - 1].text not in p.metadata["perception_facts"]
        assert 3 <= len(steps) <= 9
    assert all(n >= 4 for n in kinds.values()), kinds


@pytest.mark.slow
def test_synthesis_with_the_warmed_tiny_judge_fills_hybrid_and_consensus(tmp_path):
    from vlprm.models.tiny_judge import ensure_tiny_judge
    from vlprm.models.tiny_policy import ensure_tiny_policy
    from vlprm.puzzles import generate_puzzles

    policy = ensure_tiny_policy(CACHE / "tiny-policy")
    judge = ensure_tiny_judge(CACHE / "tiny-judge", policy)
    puzzles = tmp_path / "puzzles"
    generate_puzzles(puzzles, 8, seed=0)
    out = tmp_path / "synthesis"
    env = {**os.environ, "CONFIG": "rollout_data_generation/configs/quickstart.yaml", "PYTHON": sys.executable}
    subprocess.run(["bash", "rollout_data_generation/run.sh", "--out", str(out), "--data.path", str(puzzles),
                    "--policy.model", str(policy), "--judge.model", str(judge), "--progress", "false"], cwd=REPO, env=env, check=True, timeout=900)
    judge = list(read_jsonl(out / "judge.jsonl"))
    parsed = [r for r in judge if r["status"] == "ok"]
    assert len(judge) >= 16 and len(parsed) >= 0.8 * len(judge), [r.get("reason") for r in judge]
    assert all(r["first_error_step"] is None or 1 <= r["first_error_step"] <= len(r["steps"]) for r in parsed)
    combined = list(read_jsonl(out / "combined.jsonl"))
    kept = {v: sum(r["kept"] for r in combined if r["view"] == v) for v in ("mc", "judge", "hybrid", "consensus")}
    assert all(n > 0 for n in kept.values()), kept
    rows = list(read_jsonl(out / "export" / "prm.jsonl"))
    assert rows and {r["label_view"] for r in rows} == {"hybrid"}
