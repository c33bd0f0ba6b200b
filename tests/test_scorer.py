"""PRM scoring: one pass equals the per-step reference, padding changes nothing, vLLM agrees with
transformers, failures stay per sample, the PRM's own system prompt is used, aggregations."""

from __future__ import annotations

import json
import math
import os

import pytest

from vlprm.prm.aggregate import aggregate, aggregate_all
from vlprm.prm.format import PRMSample, encode_prm
from vlprm.prm.scorer import HFScorer, Scorer, StepScores, outcome_sample

TOL = 1e-4


def _samples(img, img2):
    """Mixed lengths, 0/1/2 images, several steps: what a real batch looks like."""
    return [
        PRMSample(question="What colour is the circle?", id="a", images=[str(img)],
                  steps=["The image shows a red circle and a blue square.", "The circle is red.",
                         "So the answer is \\boxed{A}."]),
        PRMSample(question="How many shapes are there? Options: (A) 1 (B) 2", id="b", images=[str(img), str(img2)],
                  steps=["There are two shapes in the first image.", "One circle and one square: 1 + 1 = 2.",
                         "The second image shows the same shapes.", "Counting both: 2 shapes.",
                         "Therefore the final answer is \\boxed{B}."]),
        PRMSample(question="Is 3 + 4 = 7?", id="c", steps=["3 + 4 = 7, so yes."]),
        PRMSample(question="Which side is the square on?", id="d", images=[str(img2)],
                  steps=["The square is on the right.", "The answer is \\boxed{right}."]),
    ]


@pytest.fixture(scope="module")
def second_image(tmp_path_factory):
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("img2") / "tall.png"
    img = Image.new("RGB", (90, 200), "white")
    ImageDraw.Draw(img).polygon([(10, 190), (45, 20), (80, 190)], fill="green")
    img.save(path)
    return path


@pytest.fixture(scope="module")
def sharp_scorer(tiny_model_dir):
    """The tiny PRM with fresh random "+"/"-" rows in its (tied) LM head: with the built weights
    P(+) may sit in a narrow band, too flat for a 1e-4 comparison to mean much; with these it
    spreads over ~0.1 whatever the tiny recipe. Still one fixed model for every mode compared."""
    import torch

    scorer = HFScorer(tiny_model_dir, batch_size=4)
    head = scorer.hf_model.get_output_embeddings().weight
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tid in (scorer.tokens.plus_id, scorer.tokens.minus_id):
            head[tid] = torch.randn(head.shape[1], generator=g)
    scorer._label_weight = None
    return scorer


def _flat(results):
    return [p for r in results for p in r.p_plus]


def test_one_pass_equals_per_step_reference_in_mixed_batches(sharp_scorer, sample_image, second_image):
    samples = _samples(sample_image, second_image)
    one = sharp_scorer.score(samples)
    per = HFScorer(sharp_scorer.model_path, mode="per_step", batch_size=3, hf_model=sharp_scorer.hf_model,
                   processor=sharp_scorer.processor).score(samples)
    assert [r.id for r in one] == [s.id for s in samples]
    for s, a, b in zip(samples, one, per):
        assert a.ok and b.ok and len(a.p_plus) == len(b.p_plus) == len(s.steps)
    diff = max(abs(x - y) for x, y in zip(_flat(one), _flat(per)))
    assert diff < TOL, diff
    # The comparison means something: scores differ across steps by far more than the tolerance.
    spread = max(_flat(one)) - min(_flat(one))
    assert spread > 100 * TOL, spread
    # Token accounting: num_tokens is the conversation up to its last label in both modes (the
    # VL-PRM reward's length); per-step's extra["prompt_tokens"] counts every prefix it read.
    for s, a, b in zip(samples, one, per):
        positions = encode_prm(sharp_scorer.processor, s, settings=sharp_scorer.settings)["label_positions"]
        assert a.num_tokens == b.num_tokens == positions[-1]
        assert b.extra["prompt_tokens"] == sum(positions)


def test_padding_does_not_change_scores(sharp_scorer, sample_image, second_image):
    samples = _samples(sample_image, second_image)
    batched = sharp_scorer.score(samples)  # batch of 4: three of them right-padded
    alone = [sharp_scorer.score([s])[0] for s in samples]
    diff = max(abs(x - y) for x, y in zip(_flat(batched), _flat(alone)))
    assert diff < 1e-5, diff


def test_gold_labels_of_a_sample_never_reach_the_prm(sharp_scorer, sample_image, second_image):
    s = _samples(sample_image, second_image)[0]
    labelled = PRMSample(question=s.question, steps=s.steps, images=s.images, labels=["-", "-", "-"], id="l")
    (plain,), (with_labels,) = sharp_scorer.score([s]), sharp_scorer.score([labelled])
    assert with_labels.p_plus == pytest.approx(plain.p_plus, abs=1e-6)
    # Shown to the model, the "-" of step 1 would change the score of step 2.
    leaked = sharp_scorer._run([encode_prm(sharp_scorer.processor, labelled, settings=sharp_scorer.settings)])[0]
    assert abs(leaked[1] - plain.p_plus[1]) > 1e-3


def test_bad_image_and_too_long_sample_fail_alone(sharp_scorer, sample_image, second_image, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = _samples(sample_image, second_image)
    long_one = PRMSample(question="Describe. " * 800, steps=["It is long."], images=[str(sample_image)], id="long")
    broken = PRMSample(question="Q?", steps=["s1", "s2"], images=[str(bad)], id="broken")
    limited = HFScorer(sharp_scorer.model_path, max_length=1000, hf_model=sharp_scorer.hf_model,
                       processor=sharp_scorer.processor)
    res = limited.score([good[0], broken, long_one, good[2]])
    assert res[1].p_plus is None and "broken.png" in res[1].error
    assert res[2].p_plus is None and "max_length" in res[2].error
    ref = sharp_scorer.score([good[0], good[2]])
    assert res[0].p_plus == pytest.approx(ref[0].p_plus, abs=1e-5)
    assert res[3].p_plus == pytest.approx(ref[1].p_plus, abs=1e-5)
    assert aggregate(res[1], "mean") is None  # a failed sample ranks last, never crashes


def test_outcome_mode_scores_the_whole_solution_as_one_step(sharp_scorer, sample_image, second_image):
    s = _samples(sample_image, second_image)[1]
    outcome = HFScorer(sharp_scorer.model_path, mode="outcome", hf_model=sharp_scorer.hf_model,
                       processor=sharp_scorer.processor)
    (res,) = outcome.score([s])
    assert res.ok and len(res.p_plus) == 1 and res.mode == "outcome"
    (direct,) = sharp_scorer.score([outcome_sample(s)])
    assert res.p_plus[0] == pytest.approx(direct.p_plus[0], abs=1e-6)
    (steps,) = sharp_scorer.score([s])
    assert abs(res.p_plus[0] - steps.p_plus[-1]) > 1e-3  # a different conversation, a different score
    assert res.num_tokens < steps.num_tokens  # one label turn instead of five
    assert aggregate(res, "outcome") == res.p_plus[0]
    with pytest.raises(ValueError, match="outcome"):
        aggregate(steps, "outcome")


def test_prm_directory_system_prompt_is_used_by_default(sharp_scorer, sample_image, second_image, tmp_path):
    prm = tmp_path / "my-prm"
    prm.mkdir()
    for f in os.listdir(sharp_scorer.model_path):
        os.symlink(os.path.join(sharp_scorer.model_path, f), prm / f)
    prompt = "You grade visual solutions step by step. Reply + if the step is right and - if not."
    (prm / "vlprm_prm.json").unlink()
    (prm / "vlprm_prm.json").write_text(json.dumps({"system_prompt": prompt, "step_suffix": "", "base_model": "tiny"}))
    samples = _samples(sample_image, second_image)[:2]
    own = HFScorer(prm, hf_model=sharp_scorer.hf_model)
    assert own.settings.system_prompt == prompt
    explicit = HFScorer(sharp_scorer.model_path, system_prompt=prompt, hf_model=sharp_scorer.hf_model,
                        processor=sharp_scorer.processor)
    a, b, default = own.score(samples), explicit.score(samples), sharp_scorer.score(samples)
    assert _flat(a) == pytest.approx(_flat(b), abs=1e-6)
    assert max(abs(x - y) for x, y in zip(_flat(a), _flat(default))) > 1e-3
    # An explicit choice still wins over the file ("none": the chat template's default turn).
    assert HFScorer(prm, system_prompt="none", hf_model=sharp_scorer.hf_model).settings.system_prompt is None
    with pytest.raises(ValueError, match="unknown system prompt variant"):
        HFScorer(prm, system_prompt="nosuchvariant", hf_model=sharp_scorer.hf_model)


def test_scorer_protocol_and_cli(sharp_scorer, tiny_model_dir, sample_image, tmp_path):
    from vlprm.prm.scorer import main

    assert isinstance(sharp_scorer, Scorer)
    (tmp_path / "img.png").write_bytes(sample_image.read_bytes())
    rows = [PRMSample(question="Q1?", steps=["a", "b"], images=["img.png"], id="x").to_dict(),
            PRMSample(question="Q2?", steps=["c"], images=["missing.png"], id="y").to_dict()]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    main(["--prm", str(tiny_model_dir), "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")])
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["x", "y"]
    assert len(out[0]["p_plus"]) == 2 and set(out[0]["scores"]) == {"mean", "min", "last", "product"}
    assert out[0]["scores"]["min"] == min(out[0]["p_plus"])
    assert out[1]["p_plus"] is None and "missing.png" in out[1]["error"]


def test_aggregations():
    s = StepScores(p_plus=[0.9, 0.5, 0.8], num_tokens=256)
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "product") == pytest.approx(0.36)
    assert aggregate([0.7], "outcome") == 0.7
    # The released VL-PRM shape: P(+)^a / length^b, -1 when "-" is the argmax.
    assert aggregate(s, "vlprm") == pytest.approx(0.8 ** 0.3 / 256 ** 0.6)
    assert aggregate(s, "vlprm", length="steps", a=1.0, b=1.0) == pytest.approx(0.8 / 3)
    assert aggregate(StepScores(p_plus=[0.9, 0.4], num_tokens=10), "vlprm") == -1.0
    assert aggregate([0.9, 0.8], "vlprm", num_tokens=100) == pytest.approx(0.8 ** 0.3 / 100 ** 0.6)
    with pytest.raises(ValueError, match="token count"):
        aggregate([0.9, 0.8], "vlprm")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(s, "median")
    assert aggregate(StepScores(p_plus=None, error="x"), "min") is None
    assert aggregate_all(s) == {"mean": pytest.approx(2.2 / 3), "min": 0.5, "last": 0.8, "product": pytest.approx(0.36)}
    assert aggregate(s.to_dict(), "min") == 0.5  # the JSONL form works too
    assert math.isclose(aggregate(StepScores.from_dict(s.to_dict()), "last"), 0.8)


@pytest.mark.slow
def test_vllm_scorer_agrees_with_transformers(tiny_model_dir, sample_image, second_image, tmp_path):
    """Runs in-process vLLM (CPU, fp32) on the same samples as transformers."""
    from vlprm.prm.scorer import VLLMScorer

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    samples = _samples(sample_image, second_image) + [
        PRMSample(question="Q?", steps=["s1"], images=[str(bad)], id="broken"),
        PRMSample(question="Describe. " * 2000, steps=["x", "y"], images=[str(sample_image)], id="too-long"),
    ]
    vllm_scores = VLLMScorer(tiny_model_dir, max_model_len=2048).score(samples)
    hf_scores = HFScorer(tiny_model_dir).score(samples[:4])
    for v, h in zip(vllm_scores[:4], hf_scores):
        assert v.ok, v.error
        assert v.num_tokens == h.num_tokens
        assert v.p_plus == pytest.approx(h.p_plus, abs=2e-5)
    assert max(_flat(hf_scores)) - min(_flat(hf_scores)) > 50 * 2e-5  # the tolerance is meaningful
    # The step prompts of a sample share its prefix: the engine computes about one pass.
    b = vllm_scores[1].extra
    assert b["computed_tokens"] < 0.5 * b["prompt_tokens"], b
    assert vllm_scores[4].p_plus is None and "broken.png" in vllm_scores[4].error
    assert vllm_scores[5].p_plus is None and "2048" in vllm_scores[5].error
