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
