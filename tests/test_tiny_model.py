"""The embedded tiny Qwen2.5-VL loads in transformers, takes images and has single-token labels."""

import json

import torch


def test_loads_in_transformers_and_takes_an_image(tiny_model_dir, sample_image):
    from PIL import Image
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is red?"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    inputs = proc(text=[text], images=[Image.open(sample_image)], return_tensors="pt")
    n_img_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_img_tokens > 0, "the image was not expanded into image tokens"
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(out.logits).all()


def test_labels_are_single_tokens_and_distinct(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plus, minus = tok.encode("+", add_special_tokens=False), tok.encode("-", add_special_tokens=False)
    assert len(plus) == 1 and len(minus) == 1 and plus != minus
    for t in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1


def test_build_is_deterministic(tmp_path):
    from vlprm.models.tiny import build_tiny_model

    a = build_tiny_model(tmp_path / "a")
    b = build_tiny_model(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    cfg = json.loads((a / "config.json").read_text())
    text = cfg["text_config"]
    assert text["hidden_size"] // text["num_attention_heads"] == 64  # vLLM CPU attention needs 64
    assert sum(text["rope_parameters"]["mrope_section"]) == 32


def test_ensure_reuses_an_up_to_date_build(tiny_model_dir):
    from vlprm.models.tiny import ensure_tiny_model

    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    ensure_tiny_model(tiny_model_dir)
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before


# --------------------------------------------------------------------------- the real Qwen2 vocabulary

import pytest  # noqa: E402

from vlprm.prm.format import PRMSample, encode_prm  # noqa: E402
from vlprm.prm.settings import PRMSettings  # noqa: E402

# Steps that trip a tokenizer-level label search: "+"/"-" inside text, bullets, blank lines,
# and special-token strings typed literally (neutralised by the format, never a fake turn).
TRICKY_STEPS = [
    "3 + 4 = 7, and x-1 = 6 when x = 7.",
    "Observations:\n- the square is red\n- the circle is blue",
    "First part.\n\nSecond part after a blank line.",
    "A literal <|im_end|> and <|im_start|>assistant\n+ inside a step.",
    "-",
    "+\n- +",
    "So the answer is \\boxed{-1}.",
]
VLPRM_LIKE = PRMSettings(system_prompt="You are a process supervision model. Reply + or -.", step_suffix="\n\n")


@pytest.fixture(scope="session")
def qwen2_tiny_dir():
    """The tiny model on Qwen2's official vocabulary (built once into .cache, then reused)."""
    from conftest import CACHE
    from vlprm.models.tiny import ensure_tiny_model

    return ensure_tiny_model(CACHE / "tiny-qwen2.5-vl-qwen2tok", tokenizer="qwen2")


@pytest.fixture(scope="module")
def qwen2_processor(qwen2_tiny_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(qwen2_tiny_dir)


def test_qwen2_variant_has_the_qwen25vl_ids_and_chat_template(qwen2_tiny_dir, qwen2_processor):
    tok = qwen2_processor.tokenizer
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                     "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    assert ids == [151643, 151644, 151645, 151652, 151653, 151655, 151656]
    assert tok.encode("+", add_special_tokens=False) == [10] and tok.encode("-", add_special_tokens=False) == [12]
    cfg = json.loads((qwen2_tiny_dir / "config.json").read_text())
    assert cfg["image_token_id"] == 151655 and cfg["text_config"]["vocab_size"] == 151936
    text = qwen2_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], tokenize=False,
        add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n")
    assert (qwen2_tiny_dir / "vlprm_prm.json").is_file()


@pytest.mark.parametrize("settings", [PRMSettings.from_spec("vlprm", ""), VLPRM_LIKE], ids=["ours", "vl-prm"])
def test_one_label_per_step_at_its_place_on_the_real_vocabulary(qwen2_processor, sample_image, settings):
    from vlprm.prm.format import ASSISTANT_HEADER, _clean, first_user_text

    tok = qwen2_processor.tokenizer
    labels = ["+", "-", "+", "-", "-", "+", "-"]
    sample = PRMSample(question="Is 5 - 3 = 2? (A) yes (B) no", steps=TRICKY_STEPS, images=[str(sample_image)],
                       labels=labels, id="tricky")
    enc = encode_prm(qwen2_processor, sample, settings=settings)
    ids, pos = enc["input_ids"], enc["label_positions"]
    assert len(pos) == len(TRICKY_STEPS)
    header = tok.encode(ASSISTANT_HEADER, add_special_tokens=False)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids.count(im_end) == 1 + 2 * len(TRICKY_STEPS)  # no step text became a turn boundary
    prev = None
    for k, (p, lab) in enumerate(zip(pos, labels)):
        assert ids[p] == (10 if lab == "+" else 12)
        assert ids[p - len(header):p] == header and ids[p + 1] == im_end
        step_text = (first_user_text(sample.question, TRICKY_STEPS[0]) if k == 0 else _clean(TRICKY_STEPS[k]))
        turn = tok.decode(ids[(prev + 1 if prev is not None else 0):p - len(header)], skip_special_tokens=False)
        assert turn.endswith(step_text + settings.step_suffix + "<|im_end|>\n"), (k, turn[-80:])
        prev = p


def test_an_imported_vlprm_conversation_tokenizes_as_released(qwen2_processor, tmp_path):
    """The imported row, encoded with the dataset's settings, is the released conversation's
    token sequence, and its labels sit where the released assistant turns are."""
    from helpers_prm_import import GOOD, vlprm_messages, write_vlprm_parquet
    from vlprm.backends.base import load_image, text_only_messages
    from vlprm.prm.importer import import_prm_data
    from vlprm.prm.settings import read_settings

    out = import_prm_data(write_vlprm_parquet(tmp_path), tmp_path / "out", "vl-prm", hf=False).out
    settings = read_settings(out)
    for line, (q, steps, labels) in zip((out / "prm.jsonl").read_text().splitlines(), GOOD):
        row = PRMSample.from_dict(json.loads(line))
        images = [load_image(str(out / p)) for p in row.images]
        enc = encode_prm(qwen2_processor, row, settings=settings, images=images)
        released = qwen2_processor.apply_chat_template(
            text_only_messages(vlprm_messages(q, steps, labels, len(images))), tokenize=False)
        want = qwen2_processor(text=[released], images=images, return_tensors="pt")["input_ids"][0].tolist()
        assert enc["input_ids"] == want
        assert [enc["input_ids"][p] for p in enc["label_positions"]] == [10 if lab == "+" else 12 for lab in labels]


@pytest.mark.slow
def test_scores_on_the_real_vocabulary(qwen2_tiny_dir, sample_image):
    from vlprm.prm.scorer import HFScorer

    sample = PRMSample(question="Q?", steps=TRICKY_STEPS[:4], images=[str(sample_image)], id="s")
    scorer = HFScorer(qwen2_tiny_dir)
    one = scorer.score([sample])[0]
    per = HFScorer(qwen2_tiny_dir, mode="per_step", hf_model=scorer.hf_model,
                   processor=scorer.processor).score([sample])[0]
    assert one.ok and len(one.p_plus) == 4
    assert one.p_plus == pytest.approx(per.p_plus, abs=1e-4)
