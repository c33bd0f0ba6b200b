#!/usr/bin/env python
"""PRM training throughput: tokens/s and model FLOPs utilisation (MFU) of our training step.

The Qwen2.5-VL-3B-Instruct architecture (config written out below, random weights: a random model
costs the same FLOPs as a trained one) on one GPU, bf16 weights, gradient checkpointing, AdamW,
trained on realistic PRM samples (one image + a question + 6-12 steps) encoded by `encode_prm`,
batched by our `PRMCollator` and scored by `PRMTrainer.compute_loss` (logits only at the label
positions). Two batching modes are compared:

* random:  batches drawn in random order (right padding to the longest sample of the batch);
* grouped: length-grouped batches (what `train_sampling_strategy: group_by_length` does).

MFU = model FLOPs per second / peak bf16 FLOPs of the GPU, where the model FLOPs of a step are
    6 * N_lm * text_tokens                       (language-model matmuls, forward + backward)
  + 12 * L * d_attn * sum_i T_i^2                (causal attention scores + values, PaLM's count)
  + 6 * N_vit * patches + 12 * d_v * (L_full * sum_img P^2 + L_win * P * W)   (vision tower)
  + 6 * d * V * label_positions                  (LM head, only at the label positions)
with N_lm the language model's non-embedding parameters, T_i the real (unpadded) length of
sequence i, P an image's patches, W the patches per vision attention window, L_full/L_win the
full-attention and windowed vision blocks. Padding and the forward recomputation of gradient
checkpointing are not model FLOPs (hardware FLOPs would add 2 * N * tokens for the recompute).
Tokenisation and collation run before timing (a dataloader overlaps them with compute).

Text is tokenised with the embedded tiny model's tokenizer (no model hub): token ids fit the 3B
vocabulary and the compute per token is the real model's; sequence lengths are a little longer
than with Qwen's own tokenizer for the same text.

    python scripts/bench/train_throughput.py --steps 10 --batch 2            # 3B on CUDA
    python scripts/bench/train_throughput.py --tiny --device cpu --steps 3    # smoke test on CPU
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# Qwen2.5-VL-3B-Instruct's config.json (text and vision), written out because no hub is reachable.
QWEN25_VL_3B = {
    "text_config": dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_theta=1000000.0, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        hidden_act="silu", tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
        max_window_layers=70, attention_dropout=0.0,
    ),
    "vision_config": dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
        fullatt_block_indexes=[7, 15, 23, 31], window_size=112, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, tokens_per_second=2, hidden_act="silu", in_channels=3,
    ),
    "tie_word_embeddings": True,
}

# Dense bf16 peak (no sparsity), by device name.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("A10", 125e12))

_WORDS = ("the image shows a grid of red blue green circles squares triangles count each row column "
          "so the total is therefore we add subtract multiply divide pattern next missing value shape "
          "color left right top bottom answer option equals sum difference because first second third").split()


def make_samples(n: int, seed: int, tiny: bool):
    """Realistic PRM samples: one image (sizes of chart/puzzle screenshots), 6-12 steps."""
    from PIL import Image, ImageDraw

    from vlprm.prm.format import PRMSample

    rng = random.Random(seed)
    sizes = [(56, 56), (84, 56), (112, 84)] if tiny else [(448, 448), (640, 480), (800, 600), (1024, 768),
                                                            (512, 896)]
    out = []
    for i in range(n):
        w, h = rng.choice(sizes)
        img = Image.new("RGB", (w, h), "white")
        d = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.randrange(w - 10), rng.randrange(h - 10)
            d.rectangle((x, y, x + rng.randint(4, 40), y + rng.randint(4, 40)),
                        fill=rng.choice(["red", "blue", "green", "black"]))
        k = rng.randint(6, 12)
        steps = [f"Step {j + 1}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(15, 45))) + "."
                 for j in range(k)]
        first_error = rng.choice([None, rng.randrange(k)])
        labels = ["+" if first_error is None or j < first_error else "-" for j in range(k)]
        question = "Question: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 60))) + "?"
        out.append((PRMSample(question=question, steps=steps, images=[f"<img{i}>"], labels=labels, id=f"b{i}"),
                    img))
    return out


def build_model(args, tokenizer, device):
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if args.tiny:
        from vlprm.models.tiny import ensure_tiny_model

        path = ensure_tiny_model(REPO / ".cache" / "tiny-qwen2.5-vl")
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=args.attn).to(device)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    text = dict(QWEN25_VL_3B["text_config"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    vision = dict(QWEN25_VL_3B["vision_config"])
    if args.text_layers:
        text["num_hidden_layers"] = args.text_layers
    if args.vision_depth:
        vision["depth"] = args.vision_depth
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < args.vision_depth] \
            or [args.vision_depth - 1]
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config._attn_implementation = args.attn
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model


def param_counts(model) -> dict[str, int]:
    """Parameters by part: vision tower, language-model blocks (non-embedding), embeddings."""
    vit = lm = emb = 0
    for name, p in model.named_parameters():
        if ".visual." in f".{name}" or name.startswith("visual."):
            vit += p.numel()
        elif "embed_tokens" in name or "lm_head" in name:
            emb += p.numel()
        else:
            lm += p.numel()
    return {"vision": vit, "lm_non_embedding": lm, "embedding": emb, "total": vit + lm + emb}


def batch_flops(batch, cfg, counts, merge: int) -> tuple[float, int, int]:
    """Model FLOPs of one training step on `batch` (see the module docstring), real tokens, padded tokens."""
    text = cfg.text_config
    vis = cfg.vision_config
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    tokens = int(sum(lengths))
    d_attn = text.num_attention_heads * (text.hidden_size // text.num_attention_heads)
    flops = 6.0 * counts["lm_non_embedding"] * tokens
    flops += 12.0 * text.num_hidden_layers * d_attn * sum(t * t for t in lengths)
    n_labels = int((batch["labels"] != -100).sum())
    flops += 6.0 * text.hidden_size * text.vocab_size * n_labels
    if "image_grid_thw" in batch:
        full = len(getattr(vis, "fullatt_block_indexes", []) or [])
        win = vis.depth - full
        w_patches = (vis.window_size // vis.patch_size) ** 2
        for t, h, w in batch["image_grid_thw"].tolist():
            p = t * h * w
            flops += 6.0 * counts["vision"] * p
            flops += 12.0 * vis.hidden_size * (full * p * p + win * p * min(p, w_patches))
    return flops, tokens, int(batch["input_ids"].numel())


def peak_flops(device, override_tflops: float | None) -> float | None:
    import torch

    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16:
        if key in name:
            return peak
    return None


def run_mode(mode, encoded, args, model, trainer, optimizer, collator, device, counts, peak):
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    n_batches = args.warmup + args.steps
    rng = random.Random(args.seed)
    lengths = [len(e["input_ids"]) for e in encoded]
    if mode == "grouped":
        gen = torch.Generator().manual_seed(args.seed)
        order = get_length_grouped_indices(lengths, args.batch * 4, generator=gen)
    else:
        order = list(range(len(encoded)))
        rng.shuffle(order)
    while len(order) < n_batches * args.batch:
        order = order + order
    batches = [collator([encoded[i] for i in order[b * args.batch:(b + 1) * args.batch]]) for b in range(n_batches)]

    def to_dev(b):
        out = {k: v.to(device) for k, v in b.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(model.dtype)
        return out

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, flops, toks, padded, losses = [], 0.0, 0, 0, []
    for i, b in enumerate(batches):
        b_dev = to_dev(b)
        sync()
        t0 = time.perf_counter()
        loss = trainer.compute_loss(model, b_dev)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        dt = time.perf_counter() - t0
        losses.append(loss.detach().float().item())
        if i >= args.warmup:
            f, t, p = batch_flops(b, model.config, counts, 2)
            times.append(dt)
            flops += f
            toks += t
            padded += p
    total = sum(times)
    res = {
        "mode": mode, "steps": len(times), "batch": args.batch, "step_time_s": total / len(times),
        "tokens_per_s": toks / total, "padded_tokens_per_s": padded / total,
        "samples_per_s": args.batch * len(times) / total, "padding_fraction": 1 - toks / padded,
        "model_tflops_per_s": flops / total / 1e12, "loss_first": losses[0], "loss_last": losses[-1],
    }
    if peak:
        res["mfu"] = flops / total / peak
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="use the embedded tiny model (CPU smoke test)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode")
    p.add_argument("--batch", type=int, default=2, help="sequences per step (per-device batch)")
    p.add_argument("--modes", default="random,grouped", help="comma list of: random, grouped")
    p.add_argument("--precision", default=None, help="bf16 or fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")
    p.add_argument("--no-grad-ckpt", action="store_true", help="disable gradient checkpointing")
    p.add_argument("--min-pixels", type=int, default=256 * 28 * 28)
    p.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    p.add_argument("--pool", type=int, default=None, help="samples to draw batches from (default 4*batch*steps)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s (for MFU)")
    p.add_argument("--text-layers", type=int, default=None, help="override the 3B's 36 decoder layers (smoke tests)")
    p.add_argument("--vision-depth", type=int, default=None, help="override the 3B's 32 vision blocks (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch
    from transformers import TrainingArguments

    from vlprm.models.tiny import ensure_tiny_model
    from vlprm.prm.format import load_prm_processor
    from vlprm.training.data import PRMCollator, PRMEncoder, PRMRecord
    from vlprm.training.trainer import PRMTrainer

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    if args.tiny and args.min_pixels == 256 * 28 * 28:
        args.min_pixels, args.max_pixels = 4 * 28 * 28, 64 * 28 * 28
    t_setup = time.time()
    tiny_dir = ensure_tiny_model(REPO / ".cache" / "tiny-qwen2.5-vl")
    processor = load_prm_processor(tiny_dir, args.min_pixels, args.max_pixels)
    encoder = PRMEncoder(processor, max_length=None)
    pool = args.pool or 4 * args.batch * (args.steps + args.warmup)
    encoded = [encoder(PRMRecord(sample=s, images=[img])) for s, img in make_samples(pool, args.seed, args.tiny)]
    lengths = [len(e["input_ids"]) for e in encoded]
    model = build_model(args, processor.tokenizer, device)
    model.config.use_cache = False
    if not args.no_grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    counts = param_counts(model)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4, fused=fused)
    targs = TrainingArguments(output_dir="/tmp/vlprm-bench", report_to="none", use_cpu=device.type == "cpu")
    trainer = PRMTrainer(model=model, args=targs, plus_id=encoder.tokens.plus_id, minus_id=encoder.tokens.minus_id)
    collator = PRMCollator(pad_token_id=processor.tokenizer.pad_token_id, plus_id=encoder.tokens.plus_id)
    peak = peak_flops(device, args.peak_tflops)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    m = lambda n: f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"  # noqa: E731
    arch = "tiny Qwen2.5-VL" if args.tiny else "Qwen2.5-VL-3B architecture (random weights)"
    if not args.tiny and (args.text_layers or args.vision_depth):
        arch += f" cut to {model.config.text_config.num_hidden_layers} text layers, " \
                f"{model.config.vision_config.depth} vision blocks"
    print(f"model: {arch}; "
          f"params {m(counts['total'])} (vision {m(counts['vision'])}, LM non-embedding "
          f"{m(counts['lm_non_embedding'])}, embedding {m(counts['embedding'])})")
    print(f"device: {dev_name}; {args.precision}; attention {args.attn}; gradient checkpointing "
          f"{not args.no_grad_ckpt}; batch {args.batch}; peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s")
    print(f"samples: {pool}, sequence length min/mean/max {min(lengths)}/{sum(lengths) / len(lengths):.0f}/"
          f"{max(lengths)} tokens; setup {time.time() - t_setup:.1f} s")

    results = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("random", "grouped"):
            p.error(f"unknown mode {mode!r}")
        r = run_mode(mode, encoded, args, model, trainer, optimizer, collator, device, counts, peak)
        results.append(r)
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "n/a"
        mem = f", peak mem {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
        print(f"{mode:8s} {r['tokens_per_s']:10.0f} tok/s  ({r['padded_tokens_per_s']:.0f} incl. padding, "
              f"{100 * r['padding_fraction']:.1f}% padding)  {r['samples_per_s']:.2f} samples/s  "
              f"step {r['step_time_s'] * 1000:.0f} ms  {r['model_tflops_per_s']:.1f} TFLOP/s  MFU {mfu}{mem}  "
              f"loss {r['loss_first']:.3f}->{r['loss_last']:.3f}")
    by_mode = {r["mode"]: r for r in results}
    if "random" in by_mode and "grouped" in by_mode:
        ratio = by_mode["grouped"]["tokens_per_s"] / by_mode["random"]["tokens_per_s"]
        print(f"ratio grouped/random tokens/s: {ratio:.2f}x")
    for r in results:
        if not math.isfinite(r["loss_last"]):
            print(f"warning: non-finite loss in mode {r['mode']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": dev_name, "args": vars(args), "params": counts,
                                               "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
