"""Labelling without a model: judge-reply parsing, the label views on hand-built evidence, MC and
binary search on a simulated policy whose first errors are known, batch files and the request
cache, and the stage runner end to end (resume, shards, batch mode, failures) on generated
puzzles with a simulated policy and judge."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from fakes import SimulatedPolicy
from vlprm.backends.base import ChatRequest, Completion, GenerationResult, Generator, SamplingConfig
from vlprm.data.schema import Problem, Solution, Step, StepEvidence
from vlprm.data.store import read_jsonl
from vlprm.synthesis.combine import Evidence, label, labels_from_first_error, mc_first_error, soft_from_evidence
from vlprm.synthesis.judge import (ReplyCache, parse_judge_reply, read_batch_output, request_body, request_key,
                                  write_batch_file)
from vlprm.synthesis.mc import Prober, per_step
from vlprm.synthesis.omegaprm import binary_search

# --------------------------------------------------------------------------- judge replies


def test_parse_line_format_with_step_analysis_and_trailing_text():
    reply = ("Step 1 (perception): correct - the grid has 9 circles.\n"
             "**Step 2 (perception):** incorrect - the top-left circle is red, not green.\n"
             "Step 3 (reasoning): incorrect - builds on step 2.\n"
             "FIRST_ERROR_STEP: 2\nVERDICT: incorrect\n\nLet me know if you need more detail.")
    r = parse_judge_reply(reply, 3)
    assert r.ok and r.verdict == "incorrect" and r.first_error_step == 2
    assert r.step_verdicts == ["correct", "incorrect", "incorrect"]
    assert "red, not green" in r.step_rationales[1]


@pytest.mark.parametrize("value,expected", [
    ("3", 3), ("Step 3", 3), ("step 3.", 3), ("**3**", 3), ("[3]", 3), ("Step 3 (reasoning)", 3),
    ("none", None), ("None.", None), ("-1", None), ("0", None), ("N/A", None), ("no error", None),
])
def test_first_error_variants(value, expected):
    verdict = "incorrect" if expected else "correct"
    r = parse_judge_reply(f"analysis...\nFIRST_ERROR_STEP: {value}\nVERDICT: {verdict}", 4)
    assert r.ok, r.detail
    assert r.first_error_step == expected


def test_bold_keys_and_missing_verdict():
    r = parse_judge_reply("**FIRST_ERROR_STEP:** Step 1", 2)
    assert r.ok and r.first_error_step == 1 and r.verdict == "incorrect"
    r = parse_judge_reply("**First error step**: none\n**Verdict**: Correct.", 2)
    assert r.ok and r.first_error_step is None and r.verdict == "correct"


def test_json_in_code_fence_and_bare_json():
    fenced = ('Here is my review.\n```json\n{"steps": [{"step": 1, "verdict": "correct", "analysis": "ok"},\n'
              '{"step": 2, "verdict": "incorrect", "analysis": "miscounted"}],\n'
              '"first_error_step": 2, "verdict": "incorrect"}\n```\nThat is all.')
    r = parse_judge_reply(fenced, 3)
    assert r.ok and r.first_error_step == 2 and r.step_rationales[1] == "miscounted"
    r = parse_judge_reply('{"first_error_step": null, "verdict": "correct"} trailing words', 3)
    assert r.ok and r.first_error_step is None and r.step_verdicts == ["correct"] * 3
    r = parse_judge_reply('{"First Error Step": "Step 3", "Verdict": "Incorrect"}', 3)
    assert r.ok and r.first_error_step == 3
    r = parse_judge_reply("```\n{'first_error_step': 1, 'verdict': 'incorrect',}\n```", 3)  # lenient syntax
    assert r.ok and r.first_error_step == 1


def test_step_lines_only_give_the_first_error():
    r = parse_judge_reply("Step 1: correct - fine\nStep 2: correct - fine\nStep 3: wrong - 2+2 is not 5", 3)
    assert r.ok and r.first_error_step == 3 and r.verdict == "incorrect"


def test_passing_mention_of_first_error_does_not_confuse():
    reply = ("Step 1 (perception): incorrect - this is the first error: the square is blue.\n"
             "FIRST_ERROR_STEP: 1\nVERDICT: incorrect")
    r = parse_judge_reply(reply, 2)
    assert r.ok and r.first_error_step == 1


@pytest.mark.parametrize("reply,reason", [
    ("", "empty_reply"),
    ("\n\n\n", "empty_reply"),
    ("zq lorem ipsum purple hexagon", "unparseable"),
    ("FIRST_ERROR_STEP: the third one\nVERDICT: incorrect", "unparseable_first_error"),
    ("FIRST_ERROR_STEP: 7\nVERDICT: incorrect", "first_error_out_of_range"),
    ("FIRST_ERROR_STEP: none\nVERDICT: incorrect", "no_first_error"),
    ("FIRST_ERROR_STEP: 2\nVERDICT: correct", "inconsistent"),
    ("VERDICT: incorrect", "no_first_error"),
])
def test_unparseable_replies_fail_with_a_reason(reply, reason):
    r = parse_judge_reply(reply, 3)
    assert not r.ok and r.reason == reason and r.detail


# --------------------------------------------------------------------------- combine


def ev(*counts, probed=True) -> list[StepEvidence]:
    """Evidence from (correct, total) pairs; None = not probed."""
    return [StepEvidence() if c is None else StepEvidence(mc_correct=c[0], mc_total=c[1], mc_probed=probed)
            for c in counts]


KINDS = ["perception", "perception", "reasoning", "reasoning"]


def evidence(mc=None, judge_first=None, judge_ok=True, kinds=KINDS):
    e = Evidence("p#0", list(kinds), problem_id="p")
    if mc is not None:
        e.mc, e.mc_reason = mc, None
    if judge_ok:
        e.judge_ok, e.judge_reason = True, None
        e.judge_first_error = judge_first
        e.judge_verdict = "incorrect" if judge_first else "correct"
    else:
        e.judge_reason = "judge_failed"
    return e


def test_mc_first_error_threshold_and_unprobed_steps():
    assert mc_first_error(ev((3, 4), (1, 4), (0, 4), (0, 4))) == 3
    assert mc_first_error(ev((3, 4), (1, 4), (0, 4), (0, 4)), threshold=0.25) == 2
    assert mc_first_error(ev((3, 4), (4, 4), (2, 4), (1, 1))) is None
    # Binary search evidence: only steps 2 and 3 probed -> first error 3; early stop: step 2 dead.
    assert mc_first_error(ev(None, (2, 4), (0, 4), None)) == 3
    assert mc_first_error(ev((2, 4), (0, 4), None, None)) == 2
    assert labels_from_first_error(4, 3) == ["+", "+", "-", "-"]
    assert labels_from_first_error(3, None) == ["+"] * 3
    assert soft_from_evidence(ev(None, (2, 4), (0, 4), None), 3) == [1.0, 0.5, 0.0, 0.0]


def test_mc_and_soft_views_keep_all_steps():
    e = evidence(mc=ev((4, 4), (2, 4), (0, 4), (1, 4)))
    r = label(e, "mc")
    assert r.kept and r.labels == ["+", "+", "-", "-"] and r.first_error_step == 3 and r.error_kind == "reasoning"
    assert r.num_steps == 4 and not r.cut
    s = label(e, "soft")
    assert s.labels == r.labels and s.soft_labels == [1.0, 0.5, 0.0, 0.25]
    assert label(evidence(mc=None), "mc").reason == "no_mc"


def test_judge_view_and_perception_first_error():
    r = label(evidence(judge_first=2), "judge")
    assert r.kept and r.labels == ["+", "-", "-", "-"] and r.error_kind == "perception"
    r = label(evidence(judge_first=None), "judge")
    assert r.kept and r.labels == ["+"] * 4 and r.first_error_step is None and r.error_kind is None
    assert label(evidence(judge_ok=False), "judge").reason == "judge_failed"


def test_hybrid_every_branch():
    # Judge finds an error: before it "+", it "-", cut there, whatever MC says.
    r = label(evidence(mc=ev((4, 4), (4, 4), (4, 4), (1, 1)), judge_first=3), "hybrid")
    assert r.kept and r.labels == ["+", "+", "-"] and r.num_steps == 3 and r.cut and r.first_error_step == 3
    r = label(evidence(mc=None, judge_first=1), "hybrid")
    assert r.kept and r.labels == ["-"] and r.error_kind == "perception"
    r = label(evidence(mc=ev((4, 4), (4, 4), (4, 4), (0, 1)), judge_first=4), "hybrid")
    assert r.labels == ["+", "+", "+", "-"] and not r.cut
    # Judge says correct, MC finds no failing step: all "+".
    r = label(evidence(mc=ev((4, 4), (3, 4), (1, 4), (1, 1)), judge_first=None), "hybrid")
    assert r.kept and r.labels == ["+"] * 4 and r.first_error_step is None
    # Judge says correct, MC finds a failing step: dropped.
    r = label(evidence(mc=ev((4, 4), (0, 4), (0, 4), (0, 1)), judge_first=None), "hybrid")
    assert not r.kept and r.reason == "judge_correct_mc_error" and r.mc_first_error == 2
    # Judge says correct, no MC evidence: cannot confirm, dropped.
    assert label(evidence(mc=None, judge_first=None), "hybrid").reason == "no_mc"
    # Judge failed: dropped with its reason.
    assert label(evidence(mc=ev((4, 4), (4, 4), (4, 4), (1, 1)), judge_ok=False), "hybrid").reason == "judge_failed"


def test_consensus_keeps_only_agreement():
    r = label(evidence(mc=ev((4, 4), (0, 4), (0, 4), (0, 1)), judge_first=2), "consensus")
    assert r.kept and r.labels == ["+", "-"] and r.cut
    r = label(evidence(mc=ev((4, 4), (4, 4), (4, 4), (1, 1)), judge_first=None), "consensus")
    assert r.kept and r.labels == ["+"] * 4
    r = label(evidence(mc=ev((4, 4), (4, 4), (0, 4), (0, 1)), judge_first=2), "consensus")
    assert not r.kept and r.reason == "mc_judge_disagree"
    r = label(evidence(mc=ev((4, 4), (4, 4), (4, 4), (0, 1)), judge_first=None), "consensus")
    assert not r.kept and r.reason == "mc_judge_disagree"
    assert label(evidence(mc=None, judge_first=2), "consensus").reason == "no_mc"
    r = label(evidence(mc=ev((4, 4), (0, 4), (0, 4), (0, 1)), judge_first=2), "consensus", cut_views=())
    assert r.labels == ["+", "-", "-", "-"]


def test_evidence_from_records_checks_status_and_length():
    sol = Solution("p#0", "p", "pol", "t", steps=[Step("a", "perception"), Step("b")])
    mc_ok = {"status": "ok", "steps": [e.to_dict() for e in ev((1, 2), (0, 2))]}
    e = Evidence.from_records(sol, mc_ok, {"status": "ok", "first_error_step": 2, "verdict": "incorrect"})
    assert e.mc_ok and e.judge_ok and e.judge_first_error == 2
    e = Evidence.from_records(sol, {"status": "ok", "steps": [{}]}, {"status": "failed"})
    assert e.mc_reason == "mc_step_mismatch" and e.judge_reason == "judge_failed"
    e = Evidence.from_records(sol, {"status": "failed"}, None)
    assert e.mc_reason == "mc_failed" and e.judge_reason == "no_judge"


# --------------------------------------------------------------------------- MC on a simulated policy


def sim_problems(n=6):
    return [Problem(id=f"q{i}", benchmark="sim", question=f"Simulated question {i}?",
                    options=["a", "b", "c", "d"], answer="ABCD"[i % 4], answer_type="multiple_choice")
            for i in range(n)]


def sim_solutions(problems, sim, n=4):
    from vlprm.synthesis.rollouts import rollout_records, rollout_request, solutions_of

    res = sim.generate([rollout_request(p, seed=1) for p in problems], SamplingConfig(n=n))
    pairs = []
    for p, r in zip(problems, res):
        recs = rollout_records(p, r, n, policy="sim", style="structured", max_steps=None, seed=1, drop_truncated=True)
        pairs += [(p, s) for s in solutions_of(recs)]
    return pairs


def truth(sol: Solution):
    return next((i for i, s in enumerate(sol.steps, 1) if "[wrong]" in s.text), None)


def test_per_step_and_binary_search_find_the_true_first_error():
    probs = sim_problems()
    sim = SimulatedPolicy({p.question: p.answer for p in probs}, p_good=0.8, max_steps=8)
    pairs = sim_solutions(probs, sim)
    assert any(s.correct for _, s in pairs) and any(not s.correct for _, s in pairs)
    assert any(s.steps[0].kind == "perception" for _, s in pairs)
    sim.calls.clear()
    a = per_step(pairs, Prober(sim, 8, SamplingConfig(), progress=False))
    assert len(sim.calls) == 1  # every prefix of every solution in one generate() call
    sim.calls.clear()
    prober = Prober(sim, 8, SamplingConfig(), progress=False)
    b = binary_search(pairs, prober)
    rounds = len(sim.calls)
    max_n = max(len(s.steps) for _, s in pairs)
    assert 1 <= rounds <= max_n.bit_length()  # one call per round, about log2(n) rounds
    assert prober.rollouts == sum(r.rollouts for r in b)
    for (_, sol), ra, rb in zip(pairs, a, b):
        assert ra.first_error_step == truth(sol) == rb.first_error_step, sol.id
        assert all(e.mc_probed for e in ra.evidence)
        if sol.correct:  # OmegaPRM: a correct answer means every prefix is alive, nothing probed
            assert rb.rollouts == 0 and rb.probes == []
        else:
            probed = {pr.k for pr in rb.probes}
            assert rb.first_error_step in probed or rb.first_error_step == len(sol.steps)
            for i, e in enumerate(rb.evidence, 1):
                assert e.mc_probed == (i in probed or i == len(sol.steps))
        # The same prefix gets the same seed under both methods: the same counts.
        for pr in rb.probes:
            assert (pr.correct, pr.total) == (ra.evidence[pr.k - 1].mc_correct, ra.evidence[pr.k - 1].mc_total)
        assert mc_first_error(rb.evidence) == rb.first_error_step
    assert sum(r.rollouts for r in b) < sum(r.rollouts for r in a)


def test_per_step_early_stop_probes_in_rounds_and_skips_after_a_dead_prefix():
    probs = sim_problems(4)
    sim = SimulatedPolicy({p.question: p.answer for p in probs}, p_good=0.9, p_error=1.0, max_steps=6)
    pairs = sim_solutions(probs, sim)
    sim.calls.clear()
    res = per_step(pairs, Prober(sim, 6, SamplingConfig(), progress=False), early_stop=True)
    assert len(sim.calls) > 1
    for (_, sol), r in zip(pairs, res):
        fe = truth(sol)
        assert r.first_error_step == fe
        for i, e in enumerate(r.evidence, 1):
            if i <= fe:
                assert e.mc_probed
            elif i < len(sol.steps):
                assert not e.mc_probed and e.mc_total is None


def test_last_step_is_probed_without_a_final_answer_and_failures_are_recorded():
    p = sim_problems(1)[0]
    sim = SimulatedPolicy({p.question: p.answer}, p_good=1.0)
    steps = [Step("I see a.", "perception"), Step("So b [wrong].")]
    sol = Solution("q0#0", "q0", "sim", "", steps=steps, final_answer=None, correct=False)
    r = per_step([(p, sol)], Prober(sim, 2, SamplingConfig(), progress=False))[0]
    assert [pr.k for pr in r.probes] == [1, 2] and r.first_error_step == 2
    r = binary_search([(p, sol)], Prober(sim, 2, SamplingConfig(), progress=False))[0]
    assert r.first_error_step == 2 and {pr.k for pr in r.probes} == {1, 2}

    class Broken(Generator):
        def generate(self, requests, sampling, *, progress=True, desc=None):
            return [GenerationResult(error="HTTP 500 after 3 attempts") for _ in requests]

    r = per_step([(p, sol)], Prober(Broken(), 2, SamplingConfig(), progress=False))[0]
    assert r.status == "failed" and r.reason == "generation_error" and "500" in r.detail


def test_continuation_request_shape():
    p = sim_problems(1)[0]
    sol = Solution("q0#0", "q0", "sim", "", steps=[Step("I see a.", "perception"), Step("So b.")])
    req = Prober(SimulatedPolicy({}), 3, SamplingConfig(), seed=5).request(p, sol, 1)
    assert req.continue_final_message and req.messages[-1]["role"] == "assistant"
    assert req.messages[-1]["content"][0]["text"] == "### Perception\nStep 1: I see a.\n\n"
    assert req.id == "q0#0@1"


# --------------------------------------------------------------------------- cache and batch files


def test_request_key_hashes_content_and_sampling(tmp_path, sample_image):
    from PIL import Image

    p = Problem(id="x", benchmark="b", question="What?", images=[str(sample_image)], answer="A",
                options=["a", "b"], answer_type="multiple_choice")
    sol = Solution("x#0", "x", "pol", "", steps=[Step("I see red.", "perception")])
    from vlprm.synthesis.judge import judge_request

    s = SamplingConfig(temperature=0.0, max_tokens=64)
    k1 = request_key(request_body("judge", judge_request(p, sol), s))
    copy = tmp_path / "copy.png"
    shutil.copy(sample_image, copy)
    p2 = Problem(**{**p.to_dict(), "images": [str(copy)]})
    assert request_key(request_body("judge", judge_request(p2, sol), s)) == k1  # same bytes, other path
    assert request_key(request_body("judge", judge_request(p, sol), s.replace(max_tokens=65))) != k1
    assert request_key(request_body("other", judge_request(p, sol), s)) != k1
    Image.new("RGB", (20, 20), "green").save(copy)
    assert request_key(request_body("judge", judge_request(p2, sol), s)) != k1
    body = request_body("judge", judge_request(p, sol), s)
    assert body["model"] == "judge" and body["messages"][-1]["content"][0]["type"] == "image_url"

    cache = ReplyCache(tmp_path / "cache.jsonl")
    cache.put(k1, "FIRST_ERROR_STEP: none", "judge")
    cache.close()
    assert ReplyCache(tmp_path / "cache.jsonl").get(k1) == "FIRST_ERROR_STEP: none"


def test_batch_file_round_trip(tmp_path):
    n = write_batch_file(tmp_path / "in.jsonl", {"k2": {"model": "m", "messages": []}, "k1": {"model": "m"}})
    lines = [json.loads(x) for x in (tmp_path / "in.jsonl").read_text().splitlines()]
    assert n == 2 and [x["custom_id"] for x in lines] == ["k1", "k2"]
    assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" and "body" in x for x in lines)
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join(json.dumps(r) for r in [
        {"custom_id": "k1", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "hi"}}]}},
         "error": None},
        {"custom_id": "k2", "response": {"status_code": 400, "body": {"error": {"message": "bad image"}}},
         "error": None},
        {"custom_id": "k3", "response": None, "error": {"code": "x", "message": "expired"}},
    ]) + "\n")
    got = read_batch_output(out)
    assert got["k1"] == ("hi", None)
    assert got["k2"][0] is None and "400" in got["k2"][1] and "bad image" in got["k2"][1]
    assert got["k3"][0] is None and "expired" in got["k3"][1]


# --------------------------------------------------------------------------- the runner, simulated


class SimJudge(Generator):
    """A judge that names the first step carrying the simulated policy's "[wrong]" marker;
    `garble` ids get an unreadable reply."""

    name = "simjudge"
    model = "simjudge"

    def __init__(self, garble: set[str] = frozenset()):
        self.garble = set(garble)
        self.requests = 0

    def generate(self, requests, sampling, *, progress=True, desc=None):
        out = []
        for r in requests:
            self.requests += 1
            text = r.messages[-1]["content"][-1]["text"]
            sol_part = text.split("### Solution", 1)[1]
            steps = re.findall(r"^Step (\d+) \((\w+)\): (.*)$", sol_part.split("Review the solution")[0], re.M)
            first = next((int(k) for k, _, t in steps if "[wrong]" in t), None)
            if r.id in self.garble:
                reply = "purple hexagon lorem"
            else:
                lines = [f"Step {k} ({kind}): {'incorrect' if first and int(k) >= first else 'correct'} - checked"
                         for k, kind, _ in steps]
                reply = "\n".join(lines + [f"FIRST_ERROR_STEP: {first or 'none'}",
                                           f"VERDICT: {'incorrect' if first else 'correct'}"])
            out.append(GenerationResult(completions=[Completion(reply)], request_id=r.id))
        return out


@pytest.fixture(scope="module")
def puzzles(tmp_path_factory):
    from vlprm.puzzles import generate_puzzles

    root = tmp_path_factory.mktemp("puzzles")
    generate_puzzles(root, 6, 0)
    return root


def make_run(puzzles, out, *overrides, garble=(), policy_kw=None):
    from vlprm.data.benchmarks import load_benchmark
    from vlprm.synthesis.pipeline import Synthesis, load_config

    cfg = load_config(None, ["--out", str(out), "--data.path", str(puzzles), "--policy.n", "3", "--mc.k", "6",
                             "--policy.model", "sim", "--judge.model", "simjudge", "--progress", "false",
                             "--policy.batch_problems", "2", "--mc.batch_solutions", "4", "--judge.batch_size", "5",
                             "--export.hf", "false", *overrides])
    syn = Synthesis(cfg)
    probs = load_benchmark("puzzles", puzzles, check_images=False)
    syn._policy = SimulatedPolicy({p.images[0]: p.answer for p in probs}, p_good=0.8, **(policy_kw or {}))
    syn._judge = SimJudge(set(garble))
    return syn


def records(path):
    return sorted(read_jsonl(path), key=lambda r: r["id"])


def test_runner_end_to_end_views_and_report(puzzles, tmp_path):
    syn = make_run(puzzles, tmp_path / "run", "--export.hf", "true", garble={"color_grid_0000#1"})
    syn.run()
    out = syn.out
    for name in ("problems.jsonl", "rollouts.jsonl", "mc.jsonl", "judge.jsonl", "combined.jsonl", "config.yaml",
                 "report.md", "export/prm.jsonl", "plots/label_balance.png", "plots/first_error_position.png"):
        assert (out / name).exists(), name
    judge = {r["id"]: r for r in read_jsonl(out / "judge.jsonl")}
    assert judge["color_grid_0000#1"]["status"] == "failed" and judge["color_grid_0000#1"]["reason"] == "unparseable"
    assert judge["color_grid_0000#1"]["raw"] == "purple hexagon lorem"
    rows = list(read_jsonl(out / "export" / "prm.jsonl"))
    assert rows and [r["solution_id"] for r in rows] == sorted(r["solution_id"] for r in rows)
    assert "color_grid_0000#1" not in {r["solution_id"] for r in rows}
    for r in rows:
        assert r["label_view"] == "hybrid" and len(r["labels"]) == len(r["steps"]) == len(r["step_kinds"])
        assert (out / "export" / r["images"][0]).is_file()
        if r["first_error_step"]:
            assert r["labels"][-1] == "-" and r["labels"].count("-") == 1 and "[wrong]" in r["steps"][-1]
            assert r["error_kind"] == r["step_kinds"][-1]
        else:
            assert set(r["labels"]) == {"+"} and not any("[wrong]" in s for s in r["steps"])
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "export" / "hf"))
    assert len(ds) == len(rows) and ds[0]["labels"] == rows[0]["labels"]
    report = (out / "report.md").read_text()
    assert "first error: perception" in report and "judge | 18 | 17 | unparseable: 1" in report
    st = syn.stats
    assert st["agreement"]["solutions"] == 17 and st["views"]["hybrid"]["dropped"].get("judge_failed") == 1
    kinds = st["views"]["judge"]["error_kind"]
    assert sum(kinds.values()) == sum(1 for r in judge.values() if r.get("first_error_step"))


def test_rerun_skips_done_items_and_stages_run_alone(puzzles, tmp_path):
    syn = make_run(puzzles, tmp_path / "run", "--stages", "rollouts")
    syn.run()
    assert not (syn.out / "mc.jsonl").exists()
    syn2 = make_run(puzzles, tmp_path / "run", "--stages", "rollouts,mc,judge,combine,export")
    syn2.run()
    by = {s.name: s for s in syn2.summaries}
    assert by["rollouts"].written == 0 and by["rollouts"].done_before == 18
    assert by["mc"].written == 18 and by["judge"].written == 18
    assert syn2._policy.calls and all(n <= 4 * 8 for n, _ in syn2._policy.calls)
    syn3 = make_run(puzzles, tmp_path / "run")
    syn3.run()
    assert syn3._policy.calls == [] and syn3._judge.requests == 0
    for name in ("rollouts.jsonl", "mc.jsonl", "judge.jsonl"):
        ids = [r["id"] for r in read_jsonl(syn3.out / name)]
        assert len(ids) == len(set(ids)) == 18, name
    # Judge replies come from the cache when a judge record is lost.
    lines = (syn3.out / "judge.jsonl").read_text().splitlines()
    (syn3.out / "judge.jsonl").write_text("\n".join(lines[:10]) + "\n")
    syn4 = make_run(puzzles, tmp_path / "run", "--stages", "judge")
    syn4.run()
    assert syn4._judge.requests == 0 and len(records(syn4.out / "judge.jsonl")) == 18


def test_binary_search_run_matches_truth_and_costs_less(puzzles, tmp_path):
    a = make_run(puzzles, tmp_path / "a", "--stages", "rollouts,mc,combine", "--combine.views", "mc")
    a.run()
    b = make_run(puzzles, tmp_path / "b", "--stages", "rollouts,mc,combine", "--combine.views", "mc",
                 "--mc.method", "binary_search")
    b.run()
    ca = {r["solution_id"]: r for r in read_jsonl(a.out / "combined.jsonl") if r["view"] == "mc"}
    cb = {r["solution_id"]: r for r in read_jsonl(b.out / "combined.jsonl") if r["view"] == "mc"}
    sols = {r["id"]: Solution.from_dict(r) for r in read_jsonl(a.out / "rollouts.jsonl")}
    for sid, sol in sols.items():
        assert ca[sid]["first_error_step"] == cb[sid]["first_error_step"] == truth(sol), sid
        assert ca[sid]["labels"] == cb[sid]["labels"]
    cost = lambda run: sum(r["rollouts"] for r in read_jsonl(run.out / "mc.jsonl"))  # noqa: E731
    assert cost(b) < cost(a)


def test_shards_merge_to_the_unsharded_export(puzzles, tmp_path):
    from vlprm.synthesis.merge import merge_shards

    full = make_run(puzzles, tmp_path / "full")
    full.run()
    sizes = []
    for i in range(3):
        s = make_run(puzzles, tmp_path / "sharded", "--shard", f"{i}/3")
        s.run()
        assert s.out == tmp_path / "sharded"  # one run dir; each shard job writes its own files
        sizes.append(len(s.problems))
    assert sum(sizes) == 6 and max(sizes) < 6
    assert sorted(p.name for p in (tmp_path / "sharded").glob("rollouts*.jsonl")) == [
        f"rollouts.shard{i}of3.jsonl" for i in range(3) if sizes[i]]
    merge_shards(tmp_path / "sharded")
    merged = tmp_path / "sharded" / "export" / "prm.jsonl"
    assert merged.read_bytes() == (full.out / "export" / "prm.jsonl").read_bytes()
    assert records(tmp_path / "sharded" / "combined.jsonl") == records(full.out / "combined.jsonl")


def test_judge_batch_mode_writes_then_reads_batch_files(puzzles, tmp_path):
    syn = make_run(puzzles, tmp_path / "run", "--judge.mode", "batch", "--stages", "rollouts,judge")
    syn.run()
    batch_in = syn.out / "judge_batch" / "input.jsonl"
    reqs = [json.loads(x) for x in batch_in.read_text().splitlines()]
    assert len(reqs) == 18 and not list(read_jsonl(syn.out / "judge.jsonl"))
    assert "wait in" in {s.name: s for s in syn.summaries}["judge"].note
    # Play the provider: answer every request with the simulated judge, one with an error.
    sim = SimJudge()
    lines = []
    for i, r in enumerate(reqs):
        msgs = [{"role": m["role"], "content": [{"type": "text", "text": p["text"]} for p in m["content"]
                                                if p["type"] == "text"] if isinstance(m["content"], list)
                 else m["content"]} for m in r["body"]["messages"]]
        text = sim.generate([ChatRequest(msgs, id=r["custom_id"])], SamplingConfig())[0].completions[0].text
        resp = ({"status_code": 500, "body": {"error": {"message": "overloaded"}}} if i == 0 else
                {"status_code": 200, "body": {"choices": [{"message": {"role": "assistant", "content": text}}]}})
        lines.append(json.dumps({"custom_id": r["custom_id"], "response": resp, "error": None}))
    (syn.out / "judge_batch" / "output.jsonl").write_text("\n".join(lines) + "\n")
    syn2 = make_run(puzzles, tmp_path / "run", "--judge.mode", "batch", "--stages", "judge")
    syn2.run()
    judge = records(syn2.out / "judge.jsonl")
    assert len(judge) == 18 and syn2._judge.requests == 0
    assert sum(r["status"] == "ok" for r in judge) == 17
    bad = [r for r in judge if r["status"] != "ok"]
    assert bad[0]["reason"] == "batch_error" and "overloaded" in bad[0]["detail"]


def test_unreadable_image_and_http_errors_are_recorded(puzzles, tmp_path):
    shutil.copytree(puzzles, tmp_path / "puzzles")
    syn = make_run(tmp_path / "puzzles", tmp_path / "run", "--stages", "rollouts,mc")
    syn.run()
    victim = next(Path(p.images[0]) for p in syn.problems if p.id == "color_grid_0000")
    victim.write_bytes(b"not a png")
    from vlprm.backends.openai_backend import OpenAIGenerator
    from vlprm.backends.server import free_port

    syn2 = make_run(tmp_path / "puzzles", tmp_path / "run", "--stages", "judge,combine,export")
    syn2._judge = OpenAIGenerator("nobody", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1,
                                  backoff_base=0.01, timeout=2)
    syn2.run()
    judge = records(syn2.out / "judge.jsonl")
    reasons = {r["id"]: r["reason"] for r in judge}
    assert reasons["color_grid_0000#0"] == "image_unreadable"
    assert {reasons[k] for k in reasons if not k.startswith("color_grid_0000")} == {"http_error"}
    assert "attempts" in judge[-1]["detail"]
    assert "http_error: 15" in (syn2.out / "report.md").read_text()
    # Failed items are done unless asked to retry: the simulated judge now answers them.
    victim.write_bytes((puzzles / victim.relative_to(tmp_path / "puzzles")).read_bytes())
    syn3 = make_run(tmp_path / "puzzles", tmp_path / "run", "--stages", "judge", "--retry_failed", "true")
    syn3.run()
    assert syn3._judge.requests == 18
    from vlprm.data.store import JsonlStore

    assert all(r["status"] == "ok" for r in JsonlStore(syn3.out / "judge.jsonl").values())  # last write wins


def test_a_run_with_no_problems_writes_an_empty_export(puzzles, tmp_path):
    syn = make_run(puzzles, tmp_path / "run", "--data.limit", "0", "--export.hf", "true")
    syn.run()
    from datasets import load_from_disk

    ds = load_from_disk(str(syn.out / "export" / "hf"))
    assert len(ds) == 0 and "labels" in ds.column_names
    assert (syn.out / "export" / "prm.jsonl").read_text() == "" and (syn.out / "report.md").exists()


def test_config_yaml_overrides_and_help(tmp_path, capsys):
    from vlprm.synthesis.pipeline import load_config, main

    y = tmp_path / "c.yaml"
    y.write_text("out: x\nmc:\n  method: per_step\n  k: 3\npolicy:\n  n: 2\n")
    cfg = load_config(y, ["--mc.method", "binary_search", "--policy.n=4", "--stages", "rollouts,mc",
                          "--policy.max_steps", "null", "--combine.views", "[mc, judge]", "--export.view", "judge"])
    assert (cfg.out, cfg.mc.method, cfg.mc.k, cfg.policy.n) == ("x", "binary_search", 3, 4)
    assert cfg.stages == ["rollouts", "mc"]
    assert cfg.policy.max_steps is None and cfg.combine.views == ["mc", "judge"]
    with pytest.raises(ValueError, match="mc.methd"):
        load_config(y, ["--mc.methd", "x"])
    with pytest.raises(ValueError, match="mc.method must be"):
        load_config(y, ["--mc.method", "tree"])
    with pytest.raises(ValueError, match="unknown stage"):
        load_config(y, ["--stages", "rollouts,train"])
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--mc.method" in out and "binary_search" in out and "--judge.mode" in out
    assert main(["--config", str(y), "--nope.x", "1"]) == 2


@pytest.mark.parametrize("name", ["default.yaml", "tiny.yaml"])
def test_shipped_configs_load(name):
    from vlprm.synthesis.pipeline import load_config

    root = Path(__file__).resolve().parents[1] / "rollout_data_generation" / "configs"
    cfg = load_config(root / name)
    assert cfg.stages == ["rollouts", "mc", "judge", "combine", "export"]
