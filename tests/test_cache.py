"""The one cached model call (`vlprm.cache`): keys follow image bytes, not paths; a request the
backend reports as failed is recorded and counted; a generator that raises (a dead engine) stops
the caller, EVPV and the synthesis judge included; an EVPV config mistake fails when the config
is loaded, before any sampling."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from vlprm.backends.base import ChatRequest, Completion, GenerationResult, Generator, SamplingConfig
from vlprm.cache import Call, CachedCalls, ReplyStore
from vlprm.config import ConfigError, load_config
from vlprm.data.schema import Problem, Solution, Step
from vlprm.evpv.config import EVPVConfig
from vlprm.evpv.judge import StepJudgeScorer
from vlprm.evpv.scoring import ConstantScorer, EVPVScorer
from vlprm.prm.format import PRMSample

GREEDY = SamplingConfig(temperature=0.0, max_tokens=32)


class Counting(Generator):
    """A model stand-in: replies `reply`; a request whose text contains "FAIL" comes back with a
    backend error (as the HTTP backend reports one after its retries); counts what it was asked."""

    model = "counting"

    def __init__(self, reply: str = '{"summary": "a red circle", "objects": ["red circle"]}'):
        self.reply = reply
        self.asked: list[str] = []

    def generate(self, requests, sampling, *, progress=True, desc=None):
        out = []
        for r in requests:
            text = " ".join(p.get("text", "") for m in r.messages for p in m["content"] if isinstance(p, dict))
            self.asked.append(text)
            if "FAIL" in text:
                out.append(GenerationResult(error="HTTP 500 after 3 attempts", request_id=r.id))
            else:
                out.append(GenerationResult(completions=[Completion(text=self.reply)], request_id=r.id))
        return out


class DeadEngine(Generator):
    """An engine that died: every generate() call raises, as vLLM's does after its core exits."""

    model = "dead"

    def generate(self, requests, sampling, *, progress=True, desc=None):
        raise RuntimeError("EngineDeadError: the engine core process died")


def _call(image=None, text="What is shown?") -> Call:
    parts = ([{"type": "image", "image": str(image)}] if image else []) + [{"type": "text", "text": text}]
    return Call(ChatRequest(messages=[{"role": "user", "content": parts}]))


def _sample(image, sid="p#0") -> PRMSample:
    return PRMSample(question="Which colour?", steps=["The circle is red. [visual: the circle is red]",
                                                       "So the answer is A. [visual: none]"],
                     images=[str(image)], id=sid)


def test_key_follows_image_bytes_not_path(tmp_path, sample_image):
    from PIL import Image

    img = tmp_path / "a.png"
    shutil.copy(sample_image, img)
    gen = Counting()
    calls = CachedCalls(gen, ReplyStore(tmp_path / "replies.jsonl"), GREEDY, name="t")
    [first] = calls.run([_call(img)])
    copy = tmp_path / "elsewhere.png"
    shutil.copy(img, copy)
    [again] = calls.run([_call(copy)])  # other path, same bytes: a hit
    assert len(gen.asked) == 1 and again["key"] == first["key"] and again["raw"] == first["raw"]
    Image.new("RGB", (20, 20), "green").save(img)  # same path, other bytes: a miss
    [changed] = calls.run([_call(img)])
    assert len(gen.asked) == 2 and changed["key"] != first["key"]
    # The replies are on disk: a new process asks nothing for either image.
    later = Counting()
    CachedCalls(later, ReplyStore(tmp_path / "replies.jsonl"), GREEDY, name="t").run([_call(copy), _call(img)])
    assert later.asked == []
    # Identical requests in one batch are asked once.
    gen2 = Counting()
    CachedCalls(gen2, ReplyStore(), GREEDY, name="t").run([_call(copy), _call(copy), _call(img)])
    assert len(gen2.asked) == 2


def test_evpv_step_judge_cache_follows_image_bytes(tmp_path, sample_image):
    """The step judge used to key its cache by the image path: a rewritten image reused the old verdicts."""
    from PIL import Image

    img = tmp_path / "a.png"
    shutil.copy(sample_image, img)
    gen = Counting(reply='{"steps": [{"step": 1, "verdict": "correct"}, {"step": 2, "verdict": "correct"}]}')
    judge = StepJudgeScorer(gen, store=ReplyStore(tmp_path / "judge.jsonl"), progress=False)
    judge.score([_sample(img)])
    judge.score([_sample(img)])
    assert len(gen.asked) == 1 and judge.counts["cached"] == 1
    Image.new("RGB", (20, 20), "green").save(img)
    [st] = judge.score([_sample(img)])
    assert len(gen.asked) == 2 and st.p_plus == [1.0, 1.0]


def test_request_error_is_recorded_and_counted(tmp_path, sample_image):
    gen = Counting()
    counts: Counter = Counter()
    calls = CachedCalls(gen, ReplyStore(tmp_path / "replies.jsonl"), GREEDY, name="t", counts=counts)
    ok, bad = calls.run([_call(text="fine"), _call(text="FAIL please")])
    assert ok["ok"] and ok["reason"] is None
    assert not bad["ok"] and bad["reason"] == "request_error" and "HTTP 500" in bad["error"] and bad["raw"] is None
    assert counts["t_requests"] == 2 and counts["t_request_errors"] == 1 and counts["t_failed"] == 1
    stored = [json.loads(x) for x in (tmp_path / "replies.jsonl").read_text().splitlines()]
    assert [r["ok"] for r in stored] == [True, False]
    # A recorded failure is not asked again, unless the caller retries failures.
    calls.run([_call(text="FAIL please")])
    assert len(gen.asked) == 2
    CachedCalls(gen, calls.store, GREEDY, name="t", retry_failed=True).run([_call(text="FAIL please")])
    assert len(gen.asked) == 3
    # An image file that cannot be read is a failed record too, with its reason, never sent.
    [unread] = calls.run([_call(tmp_path / "missing.png")])
    assert unread["reason"] == "image_unreadable" and "cannot read image" in unread["error"]
    assert len(gen.asked) == 3 and counts["t_image_unreadable"] == 1


def test_evpv_counts_a_failed_describer_request_and_falls_back(tmp_path, sample_image):
    """A describer request the backend failed: recorded in the cache, counted, the visual steps fall back."""
    gen = Counting()
    scorer = EVPVScorer(EVPVConfig(progress=False, cache_dir=str(tmp_path), fallback_reliability=0.5),
                        ConstantScorer(0.8), describer=_FailingDescriber(), verifier=gen)
    [res] = scorer.score_detailed([_sample(sample_image)])
    assert not res.description_ok and res.gated == pytest.approx([0.4, 0.8])
    s = scorer.summary()
    assert s["describe_request_errors"] == 1 and s["describe_failed"] == 1 and "1 requests failed" in scorer.summary_line()
    [rec] = [json.loads(x) for x in (tmp_path / "descriptions.jsonl").read_text().splitlines()]
    assert rec["reason"] == "request_error" and "HTTP 500" in rec["error"]


class _FailingDescriber(Counting):
    def generate(self, requests, sampling, *, progress=True, desc=None):
        return [GenerationResult(error="HTTP 500 after 3 attempts", request_id=r.id) for r in requests]


def test_dead_engine_stops_evpv_instead_of_gating_with_reliability_one(tmp_path, sample_image):
    scorer = EVPVScorer(EVPVConfig(progress=False, cache_dir=str(tmp_path)), ConstantScorer(0.8),
                        describer=DeadEngine(), verifier=DeadEngine())
    with pytest.raises(RuntimeError, match="engine core process died"):
        scorer.score_detailed([_sample(sample_image)])
    # Nothing was recorded as if the model had answered or the request had failed.
    assert not (tmp_path / "descriptions.jsonl").exists() or not (tmp_path / "descriptions.jsonl").read_text()
    # The same with a working describer: the dead verifier stops the run.
    desc = Counting()
    scorer = EVPVScorer(EVPVConfig(progress=False), ConstantScorer(0.8), describer=desc, verifier=DeadEngine())
    with pytest.raises(RuntimeError, match="engine core process died"):
        scorer.score([_sample(sample_image)])


def test_dead_engine_stops_the_synthesis_judge(tmp_path, sample_image):
    from vlprm.synthesis.judge import ReplyCache, judge_solutions

    p = Problem(id="x", benchmark="b", question="What?", images=[str(sample_image)], answer="A",
                options=["a", "b"], answer_type="multiple_choice")
    sol = Solution("x#0", "x", "pol", "", steps=[Step("I see red.", "perception")])
    cache = ReplyCache(tmp_path / "judge_cache.jsonl")
    with pytest.raises(RuntimeError, match="engine core process died"):
        judge_solutions([(p, sol)], cache.calls(DeadEngine(), "judge", GREEDY))
    # A reply the model gave is cached and used without asking again.
    gen = Counting(reply="FIRST_ERROR_STEP: none\nVERDICT: correct")
    recs, submit = judge_solutions([(p, sol)], cache.calls(gen, "judge", GREEDY))
    assert recs[0]["status"] == "ok" and recs[0]["verdict"] == "correct" and submit == {}
    recs, _ = judge_solutions([(p, sol)], cache.calls(DeadEngine(), "judge", GREEDY))
    assert recs[0]["status"] == "ok" and len(gen.asked) == 1


@pytest.mark.parametrize("override,message", [
    (["--evpv.gaet", "threshold"], "evpv.gaet"),
    (["--evpv.gate", "multiplyy"], "evpv.gate"),
    (["--evpv.weights.majr", "0.5"], "evpv.weights.majr"),
    (["--evpv.weights.major", "1.5"], "major"),
    (["--evpv.verifier", "{backend: vlm, model: m}"], "evpv.verifier.backend"),
    (["--evpv.describer", "{backend: vllm}"], "evpv.describer"),
    (["--evpv.verifier", "{backend: openai, model: m, base_ulr: http://x}"], "evpv.verifier.base_ulr"),
])
def test_evpv_config_mistake_fails_when_the_eval_config_loads(override, message):
    """Before: `evpv` was a free dict, read only when scoring started (after sampling)."""
    from vlprm.evaluation.config import EvalConfig

    base = ["--benchmarks", "[{name: puzzles, path: data/puzzles}]", "--scorer", "evpv", "--prm.model", "prm",
            "--prm.system_prompt", "vlprm", "--prm.step_suffix", "''"]
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(EvalConfig, None, [*base, *override])
    cfg = load_config(EvalConfig, None, [*base, "--evpv.weights.major", "0.7"])
    assert isinstance(cfg.evpv, EVPVConfig) and cfg.evpv.reliability_weights().major == 0.7
    assert cfg.evpv.reliability_weights().minor == 0.2  # a partial weights section keeps the other defaults
