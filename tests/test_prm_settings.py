"""A PRM's scoring settings (system prompt, step suffix, pixel bounds, label tokens) travel with
it in vlprm_prm.json, reach every scorer path, and a PRM without them is refused before any
sampling, never scored with a guessed prompt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vlprm.config import ConfigError
from vlprm.prm.format import SYSTEM_PROMPTS, PRMSample, encode_prm, render_text
from vlprm.prm.settings import PRMSettings, read_settings, resolve_prm_settings, write_settings

REPO = Path(__file__).resolve().parents[1]
# A "released" PRM's settings unlike ours: another prompt, VL-PRM's step suffix, other pixel bounds.
RELEASED = PRMSettings(system_prompt="You are a process supervision model for visual reasoning tasks. Reply "
                                     "\"+\" if the solution is correct up to this step, \"-\" otherwise.",
                       step_suffix="\n\n", min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)


def _prm_copy(src: Path, dst: Path, settings: PRMSettings | None) -> Path:
    """The tiny model's files under another name, with `settings` as its record (or none)."""
    dst.mkdir()
    for f in os.listdir(src):
        if f != "vlprm_prm.json":
            os.symlink(src / f, dst / f)
    if settings is not None:
        write_settings(dst, settings)
    return dst


@pytest.fixture(scope="module")
def bare_prm(tiny_model_dir, tmp_path_factory):
    return _prm_copy(tiny_model_dir, tmp_path_factory.mktemp("bare") / "prm", None)


@pytest.fixture(scope="module")
def released_prm(tiny_model_dir, tmp_path_factory):
    return _prm_copy(tiny_model_dir, tmp_path_factory.mktemp("released") / "prm", RELEASED)


@pytest.fixture(scope="module")
def sharp_model(tiny_model_dir):
    """The tiny PRM with random "+"/"-" rows in its LM head, so P(+) spreads enough to compare."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    head = model.get_output_embeddings().weight
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for label in ("+", "-"):
            head[tok.encode(label, add_special_tokens=False)[0]] = torch.randn(head.shape[1], generator=g)
    return model


def _samples(img) -> list[PRMSample]:
    return [PRMSample(question="What colour is the circle?", images=[str(img)], id="a",
                      steps=["The image shows a red circle.", "- it is red\n- it is round", "So x-1 = 0 and the "
                             "answer is \\boxed{A}."]),
            PRMSample(question="How many shapes?", images=[str(img)], id="b",
                      steps=["There are two shapes.", "1 + 1 = 2, so \\boxed{2}."])]


def test_no_record_and_no_explicit_settings_is_refused_with_what_to_pass(bare_prm):
    for model in (bare_prm, "ob11/Some-Released-PRM"):
        with pytest.raises(ConfigError) as e:
            resolve_prm_settings(model)
        msg = str(e.value)
        assert "\n" not in msg and "--prm.settings" in msg and "--prm.system_prompt" in msg and "--prm.step_suffix" in msg
    with pytest.raises(ConfigError):  # a prompt alone is not enough: the suffix would be guessed
        resolve_prm_settings(bare_prm, {"system_prompt": "vlprm"})
    got = resolve_prm_settings(bare_prm, {"system_prompt": "none", "step_suffix": "\\n\\n"})
    assert got.system_prompt is None and got.step_suffix == "\n\n" and got.source == "explicit"
    # A settings file given explicitly stands in for the missing record.
    other = write_settings(bare_prm.parent / "given", RELEASED)
    assert resolve_prm_settings(bare_prm, {"settings": str(other)}) == RELEASED


def test_every_scorer_refuses_before_loading_anything(bare_prm, tmp_path, capsys):
    from vlprm.prm.scorer import HFScorer, VLLMScorer, main, make_scorer

    # A hub id that cannot be downloaded here: ConfigError (not a load error) proves nothing was loaded.
    for make in (lambda: HFScorer("ob11/not-here"), lambda: VLLMScorer("ob11/not-here"),
                 lambda: make_scorer("hf", bare_prm, device="cpu")):
        with pytest.raises(ConfigError, match="vlprm_prm.json"):
            make()
    (tmp_path / "in.jsonl").write_text(json.dumps(PRMSample(question="Q", steps=["a"]).to_dict()) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["--prm", str(bare_prm), "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert e.value.code == 2 and not (tmp_path / "o.jsonl").exists()
    err = capsys.readouterr().err
    assert "--settings" in err and "--system-prompt" in err and "--step-suffix" in err


def test_eval_refuses_an_unknown_prm_before_any_sampling(bare_prm, tmp_path, capsys):
    from vlprm.evaluation.runner import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("benchmarks:\n  - {name: puzzles, path: nowhere}\npolicy: {backend: vllm, model: no-policy, n: 2}\n")
    out = tmp_path / "runs"
    try:
        rc = main(["--config", str(cfg), "--prm.model", str(bare_prm), "--output_root", str(out)])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert "--prm.settings" in capsys.readouterr().err
    assert not out.exists()  # no run dir: nothing was loaded, sampled or written


def test_shipped_eval_configs_name_no_prm_whose_settings_they_do_not_know():
    import yaml

    for path in sorted((REPO / "eval" / "configs").glob("*.yaml")):
        model = (yaml.safe_load(path.read_text()).get("prm") or {}).get("model") or ""
        assert not model or read_settings(REPO / model) is not None, f"{path.name} names PRM {model!r}"


def test_recorded_settings_reach_every_scorer_path(released_prm, bare_prm, sharp_model, sample_image, tmp_path):
    """The record decides prompt, suffix and pixel bounds; explicit values give the same scores;
    the old behaviour (our prompt guessed, the processor's pixel bounds) gives other ones."""
    from vlprm.prm.scorer import HFScorer, make_scorer

    samples = _samples(sample_image)
    recorded = HFScorer(released_prm, hf_model=sharp_model)
    assert recorded.settings == RELEASED
    assert recorded.processor.image_processor.max_pixels == RELEASED.max_pixels
    explicit = make_scorer("hf", bare_prm, hf_model=sharp_model, system_prompt=RELEASED.system_prompt,
                           step_suffix="\n\n", min_pixels=RELEASED.min_pixels, max_pixels=RELEASED.max_pixels)
    guessed = HFScorer(released_prm, hf_model=sharp_model, settings=PRMSettings.from_spec("vlprm", ""))
    a, b, old = recorded.score(samples), explicit.score(samples), guessed.score(samples)
    flat = lambda rs: [p for r in rs for p in r.p_plus]  # noqa: E731
    assert flat(a) == pytest.approx(flat(b), abs=1e-6)
    delta = max(abs(x - y) for x, y in zip(flat(a), flat(old)))
    print(f"\nmax |dP(+)| guessed (our prompt, processor pixels) vs recorded settings: {delta:.4f}")
    assert delta > 1e-3
    # The suffix alone moves scores too (VL-PRM keeps "\n\n" after each step).
    no_suffix = HFScorer(released_prm, hf_model=sharp_model, step_suffix="")
    assert max(abs(x - y) for x, y in zip(flat(a), flat(no_suffix.score(samples)))) > 1e-5
    assert a[0].num_tokens > no_suffix.score(samples)[0].num_tokens


def test_eval_scorer_and_cli_read_the_record(released_prm, sample_image, tmp_path):
    from vlprm.config import build_dataclass
    from vlprm.evaluation.config import EvalConfig
    from vlprm.evaluation.runner import make_prm_scorer
    from vlprm.prm.scorer import HFScorer, main

    cfg = build_dataclass(EvalConfig, {"benchmarks": [{"name": "puzzles", "path": "p"}],
                                       "policy": {"model": "m"}, "prm": {"model": str(released_prm)}}).validate()
    scorer = make_prm_scorer(cfg)  # the base scorer EVPV wraps too
    assert scorer.settings == RELEASED
    cfg.prm.step_suffix = ""
    assert make_prm_scorer(cfg, mode="outcome").settings.step_suffix == ""
    (tmp_path / "img.png").write_bytes(Path(sample_image).read_bytes())
    rows = [dict(s.to_dict(), images=["img.png"]) for s in _samples(sample_image)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--prm", str(released_prm), "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")])
    cli = [p for line in (tmp_path / "out.jsonl").read_text().splitlines() for p in json.loads(line)["p_plus"]]
    direct = [p for r in HFScorer(released_prm, hf_model=scorer.hf_model).score(_samples(sample_image))
              for p in r.p_plus]
    assert cli == pytest.approx(direct, abs=1e-6)


def test_step_suffix_is_one_code_path_for_training_and_scoring(tiny_model_dir, sample_image):
    from transformers import AutoProcessor

    from vlprm.training.data import PRMEncoder, PRMRecord

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    s = _samples(sample_image)[0]
    labelled = PRMSample(question=s.question, steps=s.steps, images=s.images, labels=["+", "-", "-"], id="x")
    text = render_text(proc, labelled, settings=RELEASED)
    for step in labelled.steps:
        assert step + "\n\n<|im_end|>" in text
    trained = PRMEncoder(proc, settings=RELEASED)(PRMRecord(sample=labelled, images=list(labelled.images)))
    scored = encode_prm(proc, labelled, settings=RELEASED)
    assert trained["input_ids"] == scored["input_ids"] and trained["label_positions"] == scored["label_positions"]
    assert encode_prm(proc, labelled, settings=PRMSettings.from_spec("vlprm", ""))["input_ids"] != scored["input_ids"]


def test_records_old_and_malformed(tmp_path):
    old = tmp_path / "v1"
    old.mkdir()
    (old / "vlprm_prm.json").write_text(json.dumps({"format": "vlprm-prm", "format_version": 1, "system_prompt": "vlprm",
                                                    "min_pixels": 3136, "max_pixels": 50176}))
    got = read_settings(old)  # our trainer before the suffix existed: always stripped steps
    assert (got.system_prompt, got.step_suffix, got.max_pixels) == (SYSTEM_PROMPTS["vlprm"], "", 50176)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vlprm_prm.json").write_text(json.dumps({"system_prompt": "x y z"}))
    with pytest.raises(ConfigError, match="step_suffix"):
        read_settings(bad)
    (bad / "vlprm_prm.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_prm_settings(bad)
    assert PRMSettings.from_record(RELEASED.to_record(base_model="x"), "here") == RELEASED
