"""EVPV: reply parsing, reliability, gate, the scorer (happy path with hand-made replies whose
right answer is known, fallbacks, caching), the ablations, and the whole thing on the tiny
model through vLLM (garbage replies -> declared fallbacks, counted)."""

from __future__ import annotations

import json
import math

import pytest

from vlprm.backends.base import Completion, GenerationResult, Generator
from experiments.evpv.ablations import (
    corrupt_description,
    corruption_sweep,
    flip_fact,
    perception_intervention,
    puzzle_candidates,
    puzzle_process_bench,
    visual_process_bench,
)
from vlprm.evpv.checklist import checklist_from_tags, parse_extractor_value, parse_visual_tags
from vlprm.evpv.description import (
    ImageDescription,
    description_from_facts,
    description_key,
    normalize_description,
    parse_description_reply,
)
from vlprm.evpv.gate import GateConfig, gate_reward, gate_steps, judge_to_unit
from vlprm.evpv.judge import parse_step_verdicts
from experiments.evpv.lexical import LexicalVerifier, check_premise
from vlprm.evpv.config import EVPVConfig
from vlprm.evpv.scoring import ConstantScorer, EVPVScorer, PrecomputedScorer, build_evpv_scorer
from vlprm.evpv.verify import Finding, ReliabilityWeights, parse_verifier_value, reliability
from vlprm.jsonparse import parse_json_reply
from vlprm.prm.aggregate import aggregate
from vlprm.prm.format import PRMSample
from vlprm.prm.scorer import Scorer, StepScores
from vlprm.prompts import (
    EVPV_DESCRIBE_SYSTEM_PROMPT,
    EVPV_EXTRACT_SYSTEM_PROMPT,
    EVPV_STEP_JUDGE_SYSTEM_PROMPT,
    EVPV_VERIFY_SYSTEM_PROMPT,
)

# --------------------------------------------------------------------------- helpers


class Scripted(Generator):
    """A stand-in model: replies[role](request text, request) -> reply text; counts calls."""

    model = "scripted"

    def __init__(self, **replies):
        self.replies = replies
        self.calls: dict[str, int] = {}

    def generate(self, requests, sampling, *, progress=True, desc=None):
        roles = {EVPV_DESCRIBE_SYSTEM_PROMPT: "describe", EVPV_EXTRACT_SYSTEM_PROMPT: "extract",
                 EVPV_VERIFY_SYSTEM_PROMPT: "verify", EVPV_STEP_JUDGE_SYSTEM_PROMPT: "judge"}
        out = []
        for r in requests:
            system = r.messages[0]["content"][0]["text"] if r.messages[0]["role"] == "system" else ""
            role = roles.get(system, "policy")
            text = "\n".join(p.get("text", "") for m in r.messages for p in m["content"] if isinstance(p, dict))
            self.calls[role] = self.calls.get(role, 0) + 1
            reply = self.replies[role](text, r)
            out.append(GenerationResult(completions=[Completion(text=reply)] * sampling.n, request_id=r.id))
        return out


class RecordingScorer:
    def __init__(self, values):
        self.values = values
        self.seen = []

    def score(self, samples):
        self.seen.extend(samples)
        return [StepScores(p_plus=list(self.values[s.id]), id=s.id, num_tokens=7) for s in samples]


DESCRIPTION = {"summary": "two rows of circles", "objects": ["red circle top-left", "blue circle top-right"],
               "numbers": ["3 circles in the bottom row"], "labels": ["a question mark at the bottom-left"],
               "relations": ["the grid has 2 rows"]}

STEPS = ["The top row is red, blue. [visual: the top row is red, blue]",
         "So the colours alternate. [visual: none]",
         "The bottom row has 3 circles. [visual: the bottom row has 3 circles; a question mark is bottom-left]"]

# Two contradictions (major at step 1, minor at step 3), one unverifiable premise (step 3), and a
# "reliability" number of the model's own that must be ignored.
VERIFY_REPLY = """Here is my check:
```json
{"premises": [
  {"step": 1, "premise": "the top row is red, blue", "status": "contradicted", "severity": "major",
   "reason": "the description has blue first",},
  {"step": 3, "premise": "the bottom row has 3 circles", "status": "contradicted", "severity": 'minor'},
  {"step": 3, "premise": "a question mark is bottom-left", "status": "unverifiable", "severity": None},
],
 "reliability": 0.99}
```"""


def _scripted(verify=VERIFY_REPLY, describe=None):
    return Scripted(describe=lambda t, r: describe or "```json\n" + json.dumps(DESCRIPTION) + "\n```",
                    verify=lambda t, r: verify)


def _sample(image, sid="p1#0", steps=STEPS):
    return PRMSample(question="What colour is missing?", steps=list(steps), images=[str(image)], id=sid)


@pytest.fixture(scope="module")
def puzzles(tmp_path_factory):
    from vlprm.data.benchmarks import load_puzzles
    from vlprm.puzzles.generate import generate_puzzles

    out = tmp_path_factory.mktemp("puzzles")
    generate_puzzles(out, n=4, seed=0, types=["color_grid", "triangle", "grid_number", "polygon_sides_number"])
    return load_puzzles(out)


# --------------------------------------------------------------------------- JSON replies


@pytest.mark.parametrize("text,expected,repair", [
    ('{"a": 1}', {"a": 1}, None),
    ('Sure:\n```json\n{"a": [1, 2,], "b": \'x\'}\n```\nDone.', {"a": [1, 2], "b": "x"}, "code_fence"),
    ("{'ok': True, 'none': None, 'f': False}", {"ok": True, "none": None, "f": False}, "python_literals"),
    ('The result is {"a": 1} as requested.', {"a": 1}, "surrounding_text"),
    ('{"steps": [{"step": 1}, {"step": 2}, {"step": 3, "verd', {"steps": [{"step": 1}, {"step": 2}]}, "truncated"),
    ('[[1, 2], [3, 4', [[1, 2]], "truncated"),
    ("{step: 1, // a comment\n}", {"step": 1}, "unquoted_keys"),
    ('Step [1] is fine. {"verdict": "correct"}', {"verdict": "correct"}, "surrounding_text"),
])
def test_parse_json_reply_repairs(text, expected, repair):
    res = parse_json_reply(text)
    assert res.ok and res.value == expected
    if repair:
        assert repair in res.repairs


@pytest.mark.parametrize("text", ["", None, "no json at all", '{"a": "never closed', "[", "{]"])
def test_parse_json_reply_unreadable(text):
    res = parse_json_reply(text)
    assert not res.ok and res.value is None and res.error


def test_parse_json_reply_expect_type():
    assert parse_json_reply('[1, 2] then {"a": 1}', expect=dict).value == {"a": 1}
    assert not parse_json_reply('{"a": 1}', expect=list).ok


# --------------------------------------------------------------------------- stages


def test_description_schema_aliases_and_oracle(sample_image, tmp_path):
    d = normalize_description({"caption": "a grid", "shapes": [{"shape": "circle", "color": "red", "position": "top"}],
                               "numbers": [3, "4 at the right"], "text": ["A"], "relationships": "left of"})
    assert d.summary == "a grid" and d.objects == ["circle red position top"]
    assert d.numbers == ["3", "4 at the right"] and d.labels == ["A"] and d.relations == ["left of"]
    assert normalize_description({"answer": "B"}) is None
    desc, err, _ = parse_description_reply("I cannot see anything.")
    assert desc is None and "unreadable" in err
    oracle = description_from_facts(["The image shows 9 circles in a 3x3 grid.", "The top row is [6, ?, 1].",
                                     "The left circle is red.", "The circle is left of the square."])
    assert oracle.summary.startswith("The image shows") and oracle.n_facts == 4
    # The cache key follows the image bytes, the describer model and the prompt version.
    other = tmp_path / "copy.png"
    other.write_bytes(sample_image.read_bytes())
    assert description_key([sample_image], "m") == description_key([other], "m")
    assert description_key([sample_image], "m") != description_key([sample_image], "m2")
    assert description_key([sample_image], "m") != description_key([sample_image], "m", "v2")


def test_visual_tags_and_extractor_shapes():
    clean, prem = parse_visual_tags("The top row is red. [visual: the top row is red; there are 3 rows]")
    assert clean == "The top row is red." and prem == ["the top row is red", "there are 3 rows"]
    assert parse_visual_tags("So 2 + 2 = 4. [Visual: none]") == ("So 2 + 2 = 4.", [])
    assert parse_visual_tags("No tag here.") == ("No tag here.", None)
    assert parse_visual_tags("Truncated [visual: the red circle")[1] == ["the red circle"]
    clean, checklist, untagged = checklist_from_tags(STEPS + ["An untagged step."])
    assert [c.visual_dependent for c in checklist] == [True, False, True, False] and untagged == [3]
    assert clean[2] == "The bottom row has 3 circles."
    assert checklist_from_tags(["a", "b"])[1] is None
    for value in ({"steps": [{"step": 1, "visual_premises": ["x"]}, {"step": 2, "visual_premises": []}]},
                  [["x"], []], {"Step 1": ["x"], "2": "none"}):
        assert parse_extractor_value(value, 2) == [["x"], []]
    assert parse_extractor_value({"steps": [{"step": 2, "premises": "a; b"}]}, 3) == [None, ["a", "b"], None]
    assert parse_extractor_value({"foo": 1}, 2) is None


def test_reliability_from_severities_not_the_models_number():
    w = ReliabilityWeights()
    assert reliability([], w) == 1.0
    fs = [Finding(0, "contradicted", severity="major"), Finding(0, "contradicted", severity="minor"),
          Finding(0, "unverifiable")]
    assert reliability(fs, w) == pytest.approx(0.4 * 0.8 * 0.95)
    assert reliability([Finding(0, "contradicted", severity="critical")], w) == 0.0
    assert reliability([Finding(0, "contradicted", severity=None)], w) == pytest.approx(0.4)  # unknown -> major
    assert reliability([Finding(0, "contradicted", severity="minor")],
                       ReliabilityWeights(minor=0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ReliabilityWeights(major=1.5)
    checklist = [(0, ["the top row is red, blue"]), (2, ["the bottom row has 3 circles"])]
    reading = parse_verifier_value(parse_json_reply(VERIFY_REPLY).value, checklist)
    assert [(f.step, f.status, f.severity) for f in reading.findings] == [
        (0, "contradicted", "major"), (2, "contradicted", "minor"), (2, "unverifiable", None)]
    # A finding for a step that was not checked (step 2 has no premises) is not used, but counted.
    r = parse_verifier_value({"premises": [{"step": 2, "premise": "zzz", "status": "contradicted"}]}, checklist)
    assert r.findings == [] and r.n_unattributed == 1
    # Other shapes: contradictions/unverifiable lists, attribution by premise text, all-unknown entries.
    r = parse_verifier_value({"contradictions": [{"premise": "the bottom row has 3 circles", "severity": "high"}],
                              "unverifiable": ["the top row is red, blue"]}, checklist)
    assert [(f.step, f.status, f.severity) for f in r.findings] == [(2, "contradicted", "critical"),
                                                                    (0, "unverifiable", None)]
    assert parse_verifier_value({"premises": []}, checklist).findings == []
    assert parse_verifier_value([1, "x"], checklist) is None  # entries, none with a status
    assert parse_verifier_value({"answer": "B"}, checklist) is None


def test_gates():
    assert gate_reward(0.8, 0.5, GateConfig("multiply")) == pytest.approx(0.4)
    assert gate_reward(0.8, 0.5, GateConfig("multiply", alpha=2)) == pytest.approx(0.2)
    assert gate_reward(0.8, 0.6, GateConfig("threshold", tau=0.5)) == 0.8
    assert gate_reward(0.8, 0.4, GateConfig("threshold", tau=0.5, low=0.25)) == pytest.approx(0.2)
    assert gate_reward(0.8, 0.3, GateConfig("min")) == 0.3
    for p, r in ((0.8, 0.3), (0.3, 0.8), (0.5, 0.5), (0.9, 1.0)):
        soft = gate_reward(p, r, GateConfig("softmin", temperature=0.05))
        assert min(p, r) - 1e-9 <= soft <= p + 1e-12  # between min and p: never raises a reward
        assert gate_reward(p, r, GateConfig("softmin", temperature=1e-4)) == pytest.approx(min(p, r), abs=1e-3)
    assert gate_steps([0.9, 0.8, 0.7], [0.5, 1.0, 1.0], [True, False, True]) == pytest.approx([0.45, 0.8, 0.7])
    # propagate: a contradicted early premise taints every later step
    assert gate_steps([0.9, 0.8, 0.7], [0.5, 1.0, 1.0], [True, False, True],
                      GateConfig(propagate=True)) == pytest.approx([0.45, 0.4, 0.35])
    assert judge_to_unit(1) == 1.0 and judge_to_unit(-1) == 0.0 and judge_to_unit(0) == 0.5
    with pytest.raises(ValueError):
        GateConfig("nope")


# --------------------------------------------------------------------------- the scorer


def test_evpv_scorer_hand_made_replies_known_reliability(sample_image, tmp_path):
    gen = _scripted()
    base = RecordingScorer({"p1#0": [0.9, 0.8, 0.7]})
    scorer = build_evpv_scorer({"cache_dir": str(tmp_path), "progress": False}, base, gen)
    assert isinstance(scorer, Scorer)
    [res] = scorer.score_detailed([_sample(sample_image)])
    assert res.visual_dependent == [True, False, True]
    assert res.reliability == pytest.approx([0.4, 1.0, 0.8 * 0.95])
    assert res.gated == pytest.approx([0.36, 0.8, 0.7 * 0.76])
    assert res.description_ok and res.verify_ok and res.fallback_steps == 0
    # The base scorer saw the steps without their tags.
    assert base.seen[0].steps[0] == "The top row is red, blue."
    [st] = scorer.score([_sample(sample_image)])
    assert isinstance(st, StepScores) and st.mode == "evpv" and st.num_tokens == 7
    assert aggregate(st, "min") == pytest.approx(0.36)
    assert st.extra["evpv"]["base"] == [0.9, 0.8, 0.7]
    # Same cache, other gate settings: no new model calls, new numbers.
    calls = dict(gen.calls)
    again = build_evpv_scorer({"cache_dir": str(tmp_path), "gate": "threshold", "tau": 0.5, "progress": False},
                              PrecomputedScorer({"p1#0": [0.9, 0.8, 0.7]}), gen)
    [res2] = again.score_detailed([_sample(sample_image)])
    assert gen.calls == calls
    assert res2.gated == pytest.approx([0.0, 0.8, 0.7])
    assert again.summary()["describe_cached"] == 1 and again.summary()["verify_cached"] == 1


def test_evpv_scorer_unreadable_replies_fall_back_and_are_counted(sample_image, tmp_path):
    gen = _scripted(verify="I think it is fine!!", describe="{'summary': 'shapes', 'objects': ['red circle'")
    scorer = EVPVScorer(EVPVConfig(progress=False, cache_dir=str(tmp_path)), ConstantScorer(0.8),
                        describer=gen, verifier=gen)
    [res] = scorer.score_detailed([_sample(sample_image)])
    # The truncated description was still read (its complete part); the verifier reply was not.
    assert res.description_ok
    assert res.reliability == [1.0, 1.0, 1.0] and res.gated == pytest.approx([0.8] * 3)
    assert res.fallback_steps == 2 and not res.verify_ok
    s = scorer.summary()
    assert s["verify_failed"] == 1 and s["fallback_steps"] == 2
    stored = [json.loads(x) for x in (tmp_path / "verify.jsonl").read_text().splitlines()]
    assert stored[0]["ok"] is False and "unreadable" in stored[0]["error"] and stored[0]["raw"]
    # A declared fallback of 0.5 gates the visual steps, from the cache (no new calls).
    calls = dict(gen.calls)
    half = EVPVScorer(EVPVConfig(progress=False, cache_dir=str(tmp_path), fallback_reliability=0.5),
                      ConstantScorer(0.8), describer=gen, verifier=gen)
    [res] = half.score_detailed([_sample(sample_image)])
    assert gen.calls == calls and res.gated == pytest.approx([0.4, 0.8, 0.4])
    # No readable description: nothing to verify against, the visual steps fall back too.
    gen = _scripted(describe="no idea")
    nodesc = EVPVScorer(EVPVConfig(progress=False, fallback_reliability=0.5), ConstantScorer(0.8),
                        describer=gen, verifier=gen)
    [res] = nodesc.score_detailed([_sample(sample_image)])
    assert not res.description_ok and "verify" not in gen.calls and res.gated == pytest.approx([0.4, 0.8, 0.4])
    assert nodesc.summary()["describe_failed"] == 1


def test_evpv_extractor_checklist_and_per_step_verification(sample_image):
    plain = ["The top row is red, blue.", "So the colours alternate.", "The bottom row has 3 circles."]
    extract = json.dumps({"steps": [{"step": 1, "visual_premises": ["the top row is red, blue"]},
                                    {"step": 2, "visual_premises": []},
                                    {"step": 3, "visual_premises": ["the bottom row has 3 circles"]}]})

    def verify(text, req):  # per-step: contradict only the step 1 premise
        if "the top row is red, blue" in text:
            return '{"premises": [{"premise": "the top row is red, blue", "status": "contradicted", "severity": "critical"}]}'
        return '{"premises": [{"premise": "the bottom row has 3 circles", "status": "supported"}]}'

    gen = Scripted(describe=lambda t, r: json.dumps(DESCRIPTION), extract=lambda t, r: extract, verify=verify)
    scorer = EVPVScorer(EVPVConfig(progress=False, checklist="auto", verify_granularity="step"),
                        ConstantScorer(0.9), describer=gen, extractor=gen, verifier=gen)
    [res] = scorer.score_detailed([_sample(sample_image, steps=plain)])
    assert gen.calls["extract"] == 1 and gen.calls["verify"] == 2
    assert res.checklist_source == "extractor" and res.visual_dependent == [True, False, True]
    assert res.reliability == [0.0, 1.0, 1.0] and res.gated == pytest.approx([0.0, 0.9, 0.9])
    # An unreadable checklist: declared fallback "none" leaves every step ungated...
    bad = Scripted(describe=lambda t, r: json.dumps(DESCRIPTION), extract=lambda t, r: "???", verify=verify)
    s2 = EVPVScorer(EVPVConfig(progress=False), ConstantScorer(0.9), describer=bad, extractor=bad, verifier=bad)
    [res] = s2.score_detailed([_sample(sample_image, "p2#0", plain)])
    assert res.visual_dependent == [False] * 3 and res.gated == [0.9] * 3 and s2.summary()["checklist_failed"] == 1
    # ...and "step_text" verifies each whole step instead.
    s3 = EVPVScorer(EVPVConfig(progress=False, checklist_fallback="step_text", verify_granularity="step"),
                    ConstantScorer(0.9), describer=bad, extractor=bad, verifier=bad)
    [res] = s3.score_detailed([_sample(sample_image, "p3#0", plain)])
    assert res.visual_dependent == [True] * 3 and res.premises[0] == [plain[0]]


def test_base_scorer_failures_and_precomputed_mismatch(sample_image):
    gen = _scripted()
    scorer = EVPVScorer(EVPVConfig(progress=False), PrecomputedScorer({"p1#0": [0.5, 0.5]}),
                        describer=gen, verifier=gen)
    [res] = scorer.score_detailed([_sample(sample_image)])
    assert res.gated is None and "2 steps" in res.error
    [st] = scorer.score([_sample(sample_image, "other")])
    assert st.p_plus is None and "no precomputed score" in st.error and aggregate(st, "min") is None
    with pytest.raises(ValueError, match="unknown EVPV config"):
        EVPVConfig.from_dict({"gate": "multiply", "gates": 1})


# --------------------------------------------------------------------------- ablations


def _desc_many():
    return ImageDescription(summary="a 3x3 grid of 9 circles",
                            objects=[f"circle {i} is red and small" for i in range(6)],
                            numbers=["17 at the left", "6 at the right", "23 at the top"],
                            labels=["a question mark at the bottom"], relations=["the square is left of the circle"])


def test_corruption_is_seeded_and_monotone():
    d = _desc_many()
    n = d.n_facts
    a, log_a = corrupt_description(d, "flip", 0.5, seed=1, key="p")
    b, _ = corrupt_description(d, "flip", 0.5, seed=1, key="p")
    c, _ = corrupt_description(d, "flip", 0.5, seed=2, key="p")
    assert a == b and a != c
    assert len(log_a.changes) == math.floor(0.5 * n + 0.5)
    assert all(before != after for _, _, before, after in log_a.changes)
    assert corrupt_description(d, "drop", 0.0, 3, "p")[0] == d and corrupt_description(d, "flip", 0.0, 3, "p")[0] == d
    empty, log = corrupt_description(d, "drop", 1.0, 3, "p")
    assert empty.is_empty() and len(log.changes) == n
    # A higher ratio drops a superset of what a lower one drops; the original is untouched.
    kept = [set(t for _, _, t in corrupt_description(d, "drop", r, 3, "p")[0].facts()) for r in (0.2, 0.5, 0.8)]
    assert kept[0] >= kept[1] >= kept[2] and d.n_facts == n
    # A fact flipped at 0.2 is flipped the same way at 0.6.
    low = dict(((f, i), after) for f, i, _, after in corrupt_description(d, "flip", 0.2, 3, "p")[1].changes)
    high = dict(((f, i), after) for f, i, _, after in corrupt_description(d, "flip", 0.6, 3, "p")[1].changes)
    assert low and all(high[k] == v for k, v in low.items())
    import random
    assert flip_fact("no flippable words here", random.Random(0)) is None
    assert flip_fact("the square is left of 3 circles", random.Random(0)) != "the square is left of 3 circles"
    with pytest.raises(ValueError):
        corrupt_description(d, "shuffle", 0.5)


def test_corruption_sweep_with_lexical_verifier(puzzles):
    assert check_premise("The top row is [6, ?, 1].", ["The top row is [6, ?, 1]."])[0] == "supported"
    assert check_premise("The top row is [7, ?, 1].", ["The top row is [6, ?, 1]."])[0] == "contradicted"
    assert check_premise("The top row is [6, ?, 1].", ["The middle row is [3, 1, 7]."])[0] == "unverifiable"
    sets = [c for p in puzzles if (c := puzzle_candidates(p, n_wrong=2)) is not None]
    assert len(sets) == len(puzzles) and all(c.correct == [True, False, False] for c in sets)
    scorer = EVPVScorer(EVPVConfig(progress=False, checklist="policy"), ConstantScorer(),
                        verifier=LexicalVerifier())
    rows = corruption_sweep(sets, scorer, ratios=(0.0, 1.0), seed=0)
    by = {(r["mode"], r["ratio"]): r for r in rows}
    # Intact description: EVPV picks the candidate whose facts match; the base reward cannot.
    assert by[("drop", 0.0)]["bon_accuracy"] == 1.0 and by[("drop", 0.0)]["base_bon_accuracy"] == pytest.approx(1 / 3)
    # Everything dropped: nothing is verifiable, EVPV can no longer separate the candidates.
    assert by[("drop", 1.0)]["bon_accuracy"] == pytest.approx(1 / 3)
    assert by[("flip", 1.0)]["mean_reliability"] < by[("flip", 0.0)]["mean_reliability"]
    assert rows == corruption_sweep(sets, scorer, ratios=(0.0, 1.0), seed=0)  # reproducible


def test_perception_intervention_conditions(puzzles):
    seen = {}

    def policy(text, req):  # answers right only when it can see the image
        has_image = any(p.get("type") == "image" for m in req.messages for p in m["content"])
        pid, cond = req.id.split("|")
        seen[cond] = (has_image, "### Image description" in text)
        ans = next(p.answer for p in puzzles if p.id == pid) if has_image else "Z"
        return f"Step 1: I look.\n\nStep 2: Therefore, the final answer is \\boxed{{{ans}}}."

    gen = Scripted(policy=policy, describe=lambda t, r: json.dumps(DESCRIPTION),
                   extract=lambda t, r: '{"steps": [{"step": 1, "visual_premises": ["red circle top-left"]}]}',
                   verify=lambda t, r: '{"premises": []}')
    scorer = EVPVScorer(EVPVConfig(progress=False), ConstantScorer(), describer=gen, extractor=gen, verifier=gen)
    res = perception_intervention(puzzles, gen, scorer, n=1)
    acc = {r["condition"]: r["accuracy"] for r in res["rows"]}
    assert acc == {"image": 1.0, "image+oracle": 1.0, "corrupted_no_image": 0.0, "question_only": 0.0}
    assert seen == {"image": (True, False), "image+oracle": (True, True), "corrupted_no_image": (False, True),
                    "question_only": (False, False)}
    assert all(r["solutions"] == len(puzzles) and r["mean_reliability"] == 1.0 for r in res["rows"])


def test_visual_process_bench_with_and_without_description(puzzles):
    samples = puzzle_process_bench(puzzles, n_wrong=1)
    assert len(samples) == 2 * len(puzzles) and {tuple(set(s.labels)) for s in samples} >= {(1,)}
    by_steps = {tuple(s.steps): s for s in samples}

    def judge(text, req):  # with the description: the gold verdicts; without: everything correct
        steps = next(v for k, v in by_steps.items() if all(st in text for st in k)).labels
        if "### Image description" in text:
            return json.dumps({"steps": [{"step": i, "verdict": "correct" if y == 1 else "incorrect"}
                                         for i, y in enumerate(steps, 1)]})
        return "[" + ", ".join('"correct"' for _ in steps)  # truncated list: still read

    gen = Scripted(judge=judge)
    descs = {s.id: description_from_facts(s.problem.metadata["perception_facts"]) for s in samples}
    res = visual_process_bench(samples, gen, descriptions=descs, progress=False)
    m = res["metrics"]
    assert m["describe_then_judge"]["overall"]["macro_f1"] == 1.0
    assert m["judge"]["overall"]["f1_incorrect"] == 0.0
    assert parse_step_verdicts({"1": "correct", "Step 2": {"verdict": "wrong"}}, 2) == [1.0, -1.0]
    assert parse_step_verdicts({"foo": "bar"}, 2) is None


# --------------------------------------------------------------------------- tiny model, vLLM


@pytest.mark.slow
def test_evpv_end_to_end_on_tiny_model_via_vllm(tiny_model_dir, puzzles, tmp_path):
    """The tiny model (random weights) as describer, extractor and verifier: its replies are
    garbage, so every stage falls back to the declared defaults, counted; the base PRM scores
    (the tiny model through the HF scorer) pass through unchanged."""
    from vlprm.backends import make_generator
    from vlprm.prm.scorer import make_scorer

    gen = make_generator("vllm", str(tiny_model_dir), max_model_len=2048)
    prm = make_scorer("hf", str(tiny_model_dir))
    sets = [puzzle_candidates(p, n_wrong=1) for p in puzzles[:2]]
    samples = [s for cs in sets for s in cs.samples]
    cfg = {"cache_dir": str(tmp_path), "progress": False, "max_tokens_describe": 48, "max_tokens_verify": 48,
           "max_tokens_extract": 48}
    scorer = build_evpv_scorer(cfg, prm, gen)
    results = scorer.score_detailed(samples)
    s = scorer.summary()
    assert s["describe_requests"] == 2 and s["describe_failed"] == 2
    assert s["description_unavailable"] == len(samples)
    n_visual = sum(sum(r.visual_dependent) for r in results)
    assert n_visual > 0 and s["fallback_steps"] == n_visual
    for r in results:
        assert r.gated == pytest.approx(r.base) and all(0.0 < p < 1.0 for p in r.base)
    stored = [json.loads(x) for x in (tmp_path / "descriptions.jsonl").read_text().splitlines()]
    assert all(rec["ok"] is False and rec["raw"] is not None for rec in stored)
    # With a hand-made description the (garbage) verifier is asked; an unreadable answer falls back.
    res2 = scorer.score_detailed(samples, descriptions=[cs.description for cs in sets for _ in cs.samples])
    assert scorer.summary()["verify_requests"] == len(samples)
    assert all(r.gated == pytest.approx(r.base) for r in res2)
    # The extractor path on the same engine (no tags): garbage checklists -> no visual premises.
    ext = build_evpv_scorer({**cfg, "checklist": "extractor"}, ConstantScorer(0.7), gen)
    out = ext.score(samples[:2])
    assert [st.p_plus for st in out] == [[0.7] * len(x.steps) for x in samples[:2]]
    assert ext.summary()["checklist_requests"] == 2


@pytest.mark.slow
def test_evpv_ablations_cli_on_tiny_model(tiny_model_dir, puzzles, tmp_path):
    """The three ablations from the command line with the tiny model as every model."""
    from pathlib import Path

    from experiments.evpv import cli

    pdir = str(Path(puzzles[0].images[0]).parents[2])
    model = ["--backend", "vllm", "--model", str(tiny_model_dir), "--max-model-len", "2048", "--quiet"]
    out = tmp_path / "abl"
    res = cli.run(["corruption", "--problems", pdir, "--limit", "2", "--n-wrong", "1", "--ratios", "0,1",
                   "--out", str(out / "c"), "--config", str(_yaml(tmp_path)), *model])
    assert len(res["rows"]) == 4 and (out / "c" / "corruption.txt").exists()
    # Garbage verifier: every verification falls back to 1.0, so EVPV cannot separate the candidates.
    assert all(r["mean_reliability"] == 1.0 and r["bon_accuracy"] == 0.5 for r in res["rows"])
    res = cli.run(["intervention", "--problems", pdir, "--limit", "2", "--policy.backend", "vllm",
                   "--policy.model", str(tiny_model_dir), "--max-tokens", "32", "--out", str(out / "i"),
                   "--config", str(_yaml(tmp_path)), *model])
    assert [r["condition"] for r in res["rows"]] == ["image", "image+oracle", "corrupted_no_image", "question_only"]
    assert all(r["solutions"] == 2 and r["failed"] == 0 for r in res["rows"])
    res = cli.run(["vpb", "--synthetic-from", pdir, "--limit", "2", "--max-tokens", "32", "--out", str(out / "v"),
                   *model])
    assert set(res["metrics"]) == {"judge", "describe_then_judge"}
    assert res["counts"]["judge"]["requests"] == 4


def _yaml(tmp_path):
    p = tmp_path / "evpv.yaml"
    p.write_text("evpv:\n  max_tokens_describe: 32\n  max_tokens_verify: 32\n  max_tokens_extract: 32\n"
                 "  gate: multiply\n  weights: {minor: 0.1}\n")
    return p
