"""Search strategies pick what a known scorer says is best, stop where they should, and count
their compute. The strategy-logic tests use
a scripted policy and a keyword scorer (where the right pick is known); one slow test runs greedy
and beam search end to end with the tiny model in vLLM and the real transformers PRM scorer."""

from __future__ import annotations

import json

import pytest

from vlprm.backends.base import Completion, GenerationResult, Generator
from vlprm.data.schema import Problem
from vlprm.prm.scorer import Scorer, StepScores
from vlprm.search import SearchConfig, beam_search, dvts_search, greedy_search, run_search

KEYWORDS = {"good": 0.9, "ok": 0.6, "bad": 0.1, "awful": 0.02}


class KeywordScorer:
    """P(+) of a step from a keyword in it; 10 PRM tokens per step; "fail" = cannot be scored."""

    def __init__(self):
        self.calls: list[list] = []

    def score(self, samples):
        self.calls.append(list(samples))
        out = []
        for s in samples:
            if any("fail" in step for step in s.steps):
                out.append(StepScores(p_plus=None, error="scripted failure", id=s.id, num_tokens=5))
                continue
            p = [next((v for k, v in KEYWORDS.items() if k in step), 0.5) for step in s.steps]
            out.append(StepScores(p_plus=p, num_tokens=10 * len(s.steps), id=s.id))
        return out


class ScriptedPolicy(Generator):
    """Next steps from a script: tree[chunks so far] = [(text, ending), ...] with ending "sep"
    (stopped at the blank line), "eos" (end of answer) or "length" (max_tokens). The i-th of a
    request's n completions is option (slot * n + i) % len(options), slot from the request id;
    tokens = words. A prefix without a script fails its request."""

    name = "scripted"

    def __init__(self, tree):
        self.tree = tree
        self.calls: list[tuple[list, object]] = []

    def generate(self, requests, sampling, *, progress=True, desc=None):
        self.calls.append((list(requests), sampling))
        out = []
        for req in requests:
            if req.continue_final_message:
                prefix = req.messages[-1]["content"][0]["text"]
                assert prefix.endswith("\n\n"), "a continuation must start a new step"
                chunks = tuple(prefix[:-2].split("\n\n"))
            else:
                assert req.messages[-1]["role"] == "user"
                chunks = ()
            options = self.tree.get(chunks)
            if options is None:
                out.append(GenerationResult(error=f"no script for {chunks}", request_id=req.id))
                continue
            slot = int(req.id.rsplit("/", 1)[1])
            comps = []
            for i in range(sampling.n):
                text, ending = options[(slot * sampling.n + i) % len(options)]
                comps.append(Completion(text=text, finish_reason="length" if ending == "length" else "stop",
                                        stop_reason="\n\n" if ending == "sep" else None,
                                        num_tokens=len(text.split())))
            out.append(GenerationResult(completions=comps, prompt_tokens=100 + 10 * len(chunks), request_id=req.id))
        return out


def _problem(pid="p1"):
    return Problem(id=pid, benchmark="test", question="How many circles?", options=["1", "2"],
                   answer="B", answer_type="multiple_choice")


def test_greedy_picks_the_best_step_each_time_and_counts_its_compute():
    tree = {
        (): [("Step 1: bad start", "sep"), ("Step 1: good start", "sep")],
        ("Step 1: good start",): [("Step 2: awful middle", "sep"), ("Step 2: good middle", "sep")],
        ("Step 1: good start", "Step 2: good middle"): [("Step 3: bad end \\boxed{1}", "sep"),
                                                        ("Step 3: good end \\boxed{2}", "sep")],
    }
    policy, scorer = ScriptedPolicy(tree), KeywordScorer()
    assert isinstance(scorer, Scorer)
    cfg = SearchConfig(n=2, max_steps=10, max_step_tokens=77, style="structured")
    r1, r2 = greedy_search([_problem("p1"), _problem("p2")], policy, scorer, cfg)
    for r in (r1, r2):
        assert r.text == "Step 1: good start\n\nStep 2: good middle\n\nStep 3: good end \\boxed{2}"
        assert r.steps == ["good start", "good middle", "good end \\boxed{2}"]  # markers removed, as in training
        assert r.step_scores == [0.9, 0.9, 0.9] and r.score == 0.9
        assert r.finish_reason == "answer" and r.iterations == 3
        assert len(r.candidates) == 2 and r.chosen_index == 1
        assert [t["chosen"] for t in r.trace] == [1, 1, 1]
        assert r.hyperparameters["strategy"] == "greedy" and r.hyperparameters["n"] == 2
        assert "beam_width" not in r.hyperparameters
        b = r.budget
        assert (b.policy_calls, b.policy_requests, b.policy_completions) == (3, 3, 6)
        assert b.policy_prompt_tokens == 100 + 110 + 120
        assert b.policy_generated_tokens == sum(len(t.split()) for opts in tree.values() for t, _ in opts)
        assert (b.prm_calls, b.prm_samples, b.prm_tokens) == (3, 6, 10 * (2 * 1 + 2 * 2 + 2 * 3))
        json.dumps(r.to_dict())
    # Both problems share each round: one policy call and one PRM call per iteration.
    assert len(policy.calls) == 3 and len(scorer.calls) == 3
    assert all(len(reqs) == 2 for reqs, _ in policy.calls)
    reqs, sampling = policy.calls[2]
    assert sampling.n == 2 and sampling.stop == ["\n\n"] and sampling.max_tokens == 77
    assert reqs[0].continue_final_message
    assert reqs[0].messages[-1]["content"][0]["text"] == "Step 1: good start\n\nStep 2: good middle\n\n"
    assert not policy.calls[0][0][0].continue_final_message


def test_greedy_takes_the_least_bad_step_and_stops_at_max_steps():
    tree = {
        (): [("awful a", "sep"), ("bad b", "sep")],
        ("bad b",): [("bad d", "sep"), ("awful c", "sep")],
    }
    (r,) = greedy_search([_problem()], ScriptedPolicy(tree), KeywordScorer(), n=2, max_steps=2, style="plain")
    assert r.text == "bad b\n\nbad d" and r.finish_reason == "max_steps" and r.iterations == 2
    assert [t["all_below_threshold"] for t in r.trace] == [True, True]


@pytest.mark.parametrize("ending, stop_on_length, expected", [
    ("eos", True, "eos"), ("length", True, "length"), ("length", False, "max_steps"),
])
def test_a_path_ends_at_end_of_answer_or_length(ending, stop_on_length, expected):
    tree = {(): [("good one", ending), ("ok two", "sep")], ("good one",): [("good more", "sep")]}
    (r,) = greedy_search([_problem()], ScriptedPolicy(tree), KeywordScorer(), n=2, max_steps=2,
                         style="plain", stop_on_length=stop_on_length)
    assert r.finish_reason == expected
    assert r.iterations == (2 if expected == "max_steps" else 1)


def test_failed_policy_request_and_unscorable_candidate_are_recorded_not_fatal():
    tree = {(): [("fail x", "sep"), ("awful y", "sep")]}  # no script after "awful y": request fails
    (r,) = greedy_search([_problem()], ScriptedPolicy(tree), KeywordScorer(), n=2, max_steps=5, style="plain")
    assert r.text == "awful y"  # an unscored candidate ranks below even a 0.02 one
    assert r.finish_reason == "error"
    assert any("PRM could not score" in e for e in r.errors)
    assert any("policy request failed" in e for e in r.errors)


TRAP = {
    (): [("good trap", "sep"), ("ok path", "sep")],
    ("good trap",): [("bad x \\boxed{1}", "sep"), ("bad y \\boxed{1}", "sep")],
    ("ok path",): [("good z \\boxed{2}", "sep"), ("ok w \\boxed{2}", "sep")],
}


def test_beam_search_escapes_the_trap_greedy_falls_into():
    (g,) = greedy_search([_problem()], ScriptedPolicy(TRAP), KeywordScorer(), n=2, style="plain")
    assert g.text == "good trap\n\nbad x \\boxed{1}"
    policy = ScriptedPolicy(TRAP)
    (b,) = beam_search([_problem()], policy, KeywordScorer(), n=2, beam_width=2, style="plain")
    assert b.text == "ok path\n\ngood z \\boxed{2}" and b.step_scores == [0.6, 0.9]
    # Completed = the top 2 of the 4 second-step candidates; the trap's children were dropped.
    assert sorted(c["text"] for c in b.candidates) == ["ok path\n\ngood z \\boxed{2}", "ok path\n\nok w \\boxed{2}"]
    assert b.hyperparameters["beam_width"] == 2 and b.hyperparameters["strategy"] == "beam"
    assert [len(reqs) for reqs, _ in policy.calls] == [1, 2]  # the root, then both kept beams
    assert (b.budget.policy_requests, b.budget.policy_completions, b.budget.prm_samples) == (3, 6, 6)
    # With one beam, beam search is greedy search.
    (b1,) = beam_search([_problem()], ScriptedPolicy(TRAP), KeywordScorer(), n=2, beam_width=1, style="plain")
    assert b1.text == g.text


def test_dvts_grows_independent_subtrees_and_picks_the_best_leaf():
    tree = {
        (): [("good a", "sep"), ("ok b", "sep"), ("bad c", "sep"), ("awful d", "sep")],
        ("good a",): [("ok a2 \\boxed{1}", "sep"), ("bad a3 \\boxed{1}", "sep")],
        ("bad c",): [("good c2 \\boxed{2}", "sep"), ("awful c3 \\boxed{2}", "sep")],
    }
    policy = ScriptedPolicy(tree)
    (r,) = dvts_search([_problem()], policy, KeywordScorer(), n=4, n_subtrees=2, style="plain")
    leaves = sorted(c["text"] for c in r.candidates)
    assert leaves == ["bad c\n\ngood c2 \\boxed{2}", "good a\n\nok a2 \\boxed{1}"]
    assert r.text == "bad c\n\ngood c2 \\boxed{2}"  # best leaf by the last step
    for reqs, sampling in policy.calls:  # each subtree expands n // n_subtrees candidates
        assert len(reqs) == 2 and sampling.n == 2
        assert reqs[0].seed != reqs[1].seed
    assert r.hyperparameters["n_subtrees"] == 2 and r.hyperparameters["candidates_per_subtree"] == 2
    (m,) = dvts_search([_problem()], ScriptedPolicy(tree), KeywordScorer(), n=4, n_subtrees=2,
                       style="plain", final_aggregation="min")
    assert m.text == "good a\n\nok a2 \\boxed{1}"  # min 0.6 beats min 0.1
    (again,) = run_search([_problem()], ScriptedPolicy(tree), KeywordScorer(),
                          SearchConfig(strategy="dvts", n=4, n_subtrees=2, style="plain"))
    assert again.text == r.text and again.budget == r.budget


class LengthScorer(KeywordScorer):
    """KeywordScorer whose PRM input is 100 tokens plus one per character of the steps."""

    def score(self, samples):
        out = super().score(samples)
        for s, r in zip(samples, out):
            r.num_tokens = 100 + sum(len(step) for step in s.steps)
        return out


def test_greedy_vlprm_rule_picks_the_highest_p_plus_when_every_step_is_wrong():
    tree = {(): [("awful a", "sep"), ("bad b", "sep"), ("awful c", "sep")],
            ("bad b",): [("bad d \\boxed{2}", "sep")], ("awful a",): [("bad e \\boxed{1}", "sep")]}
    # The `vlprm` aggregation gives all three -1 and max_score keeps the first of the tie.
    (first,) = greedy_search([_problem()], ScriptedPolicy(tree), LengthScorer(), n=3, max_steps=3,
                             style="plain", aggregation="vlprm")
    assert first.trace[0]["chosen"] == 0 and first.text.startswith("awful a")
    (rule,) = greedy_search([_problem()], ScriptedPolicy(tree), LengthScorer(), n=3, max_steps=3,
                            style="plain", aggregation="vlprm", choice="vlprm_rule")
    assert rule.trace[0]["chosen"] == 1 and rule.text.startswith("bad b")
    assert rule.hyperparameters["choice"] == "vlprm_rule"


def test_greedy_vlprm_rule_prefers_the_shorter_conversation_among_right_steps():
    long_good = "good " + "and so on " * 30
    tree = {(): [(long_good + "\\boxed{1}", "sep"), ("ok \\boxed{2}", "sep")]}
    (top,) = greedy_search([_problem()], ScriptedPolicy(tree), LengthScorer(), n=2, style="plain")
    assert top.trace[0]["chosen"] == 0  # P(+) .9 beats .6
    (rule,) = greedy_search([_problem()], ScriptedPolicy(tree), LengthScorer(), n=2, style="plain",
                            choice="vlprm_rule")
    # .6^.3 / (100 + 14)^.6 = .05 > .9^.3 / (100 + ~310)^.6 = .026
    assert rule.trace[0]["chosen"] == 1 and rule.text == "ok \\boxed{2}"


def test_search_config_rejects_nonsense():
    with pytest.raises(ValueError, match="strategy"):
        SearchConfig(strategy="mcts")
    with pytest.raises(ValueError, match="n >= n_subtrees"):
        SearchConfig(strategy="dvts", n=2, n_subtrees=4)
    with pytest.raises(ValueError, match="aggregation"):
        SearchConfig(aggregation="outcome")
    with pytest.raises(ValueError, match="choice"):
        SearchConfig(choice="first")


@pytest.mark.slow
def test_greedy_and_beam_end_to_end_with_tiny_model_in_vllm_and_hf_scorer(tiny_model_dir, sample_image):
    from vlprm.backends import make_generator
    from vlprm.prm.scorer import HFScorer, build_prm_sample

    policy = make_generator("vllm", str(tiny_model_dir), max_model_len=2048)
    scorer = HFScorer(tiny_model_dir)
    problem = Problem(id="e2e", benchmark="test", question="Which shape is red?", images=[str(sample_image)],
                      options=["circle", "square"], answer="A", answer_type="multiple_choice")
    common = dict(n=2, max_steps=3, max_step_tokens=16, temperature=1.0, stop_on_length=False, seed=3)
    (g,) = greedy_search([problem], policy, scorer, **common)
    (b,) = beam_search([problem], policy, scorer, beam_width=2, **common)
    for r in (g, b):
        assert r.errors == []
        assert 1 <= r.iterations <= 3 and r.text and r.steps
        assert len(r.step_scores) == len(r.steps) and all(0 < p < 1 for p in r.step_scores)
        # What the search recorded is what the PRM says about the chosen solution.
        (fresh,) = scorer.score([build_prm_sample(problem, r.steps)])
        assert fresh.p_plus == pytest.approx(r.step_scores, abs=1e-5)
        budget = r.budget
        assert budget.policy_calls == r.iterations == budget.prm_calls
        assert 0 < budget.policy_generated_tokens <= 16 * budget.policy_completions
        assert budget.policy_prompt_tokens > 0 and budget.prm_tokens > 0
        best = max(c["final_score"] for c in r.candidates)
        assert r.candidates[r.chosen_index]["final_score"] == r.score
    assert all(t["chosen"] == max(range(len(t["scores"])), key=lambda i: (t["scores"][i], -i)) for t in g.trace)
    assert b.score == best
    assert b.budget.policy_completions == 2 * b.budget.policy_requests
