"""PRM scoring speed: one pass vs per step (transformers), and transformers vs vLLM.

The same solutions (6-12 steps each, one image each) are scored by
  1. `HFScorer(mode="one_pass")`: every step's P(+) from one forward pass per solution;
  2. `HFScorer(mode="per_step")`: the reference, one forward pass per step prefix;
  3. `VLLMScorer`: one request per step, prefix-cached (unless --skip-vllm).
Scores must agree (max |diff| printed); the speed ratios are the point. The model is the tiny
Qwen2.5-VL made bigger (random weights; cost depends on shapes, not on what the weights know),
built once into the cache dir. Throughput is measured after a warm-up on different solutions, so
vLLM's prefix cache holds nothing of the timed ones.

    .venv/bin/python scripts/bench/scoring_speed.py [--n-solutions 8 --device cpu --skip-vllm]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORDS = ("the circle square triangle red blue green left right top bottom row column count sum "
         "equals pattern next shape size larger smaller so therefore each two three four").split()


def bench_model(cache: Path, hidden: int, layers: int, intermediate: int) -> Path:
    """The bigger tiny model, built once per shape."""
    from vlprm.models.tiny import RECIPE_VERSION, build_tiny_model

    out = cache / f"bench-tiny-h{hidden}-l{layers}-i{intermediate}"
    marker = out / "vlprm_tiny.json"
    if marker.exists() and json.loads(marker.read_text()).get("recipe_version") == RECIPE_VERSION:
        return out
    print(f"building the benchmark model into {out} ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".build-", dir=cache))
    build_tiny_model(tmp, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=intermediate)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def make_solutions(n: int, image_dir: Path, seed: int, min_steps: int, max_steps: int, tag: str):
    from PIL import Image, ImageDraw

    from vlprm.prm.format import PRMSample

    rng = random.Random(seed)
    samples = []
    for i in range(n):
        path = image_dir / f"{tag}{i}.png"
        img = Image.new("RGB", (rng.randint(120, 320), rng.randint(120, 320)), "white")
        d = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = rng.randint(0, 80), rng.randint(0, 80)
            d.ellipse((x, y, x + 40, y + 40), fill=rng.choice(["red", "blue", "green"]))
        img.save(path)
        steps = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30))) + "."
                 for _ in range(rng.randint(min_steps, max_steps))]
        samples.append(PRMSample(question=f"Question {tag}{i}: how many circles are red?", steps=steps,
                                 images=[str(path)], id=f"{tag}{i}"))
    return samples


def timed(scorer, samples):
    t0 = time.perf_counter()
    res = scorer.score(samples)
    return res, time.perf_counter() - t0


def max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra.p_plus, rb.p_plus))


def report(name: str, res, seconds: float) -> None:
    n = len(res)
    tokens = sum(r.num_tokens for r in res)
    print(f"{name:<10} {n} solutions in {seconds:7.2f} s  ({n / seconds:6.2f} samples/s, "
          f"{tokens / seconds:8.0f} PRM tokens/s, {tokens} PRM tokens)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-solutions", type=int, default=8)
    ap.add_argument("--device", default=None, help="transformers device (default: cuda if available, else cpu)")
    ap.add_argument("--batch-size", type=int, default=4, help="HFScorer sequences per forward pass")
    ap.add_argument("--min-steps", type=int, default=6)
    ap.add_argument("--max-steps", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--model", default=None, help="score with this model instead of building the bench model")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("VLPRM_CACHE", REPO / ".cache")))
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from vlprm.prm.scorer import HFScorer

    args.cache.mkdir(parents=True, exist_ok=True)
    model = args.model or str(bench_model(args.cache, args.hidden, args.layers, args.intermediate))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        samples = make_solutions(args.n_solutions, Path(tmp), args.seed, args.min_steps, args.max_steps, "s")
        warm = make_solutions(2, Path(tmp), args.seed + 1, args.min_steps, args.max_steps, "w")
        steps = sum(len(s.steps) for s in samples)
        print(f"model {model} on {device}, torch threads {torch.get_num_threads()}; {len(samples)} solutions, "
              f"{steps} steps ({steps / len(samples):.1f} per solution); load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores (timings on a busy machine are noisy)")

        one = HFScorer(model, device=device, batch_size=args.batch_size)
        per = HFScorer(model, mode="per_step", batch_size=args.batch_size, hf_model=one.hf_model,
                       processor=one.processor)
        one.score(warm)
        r_one, t_one = timed(one, samples)
        r_per, t_per = timed(per, samples)
        report("one-pass", r_one, t_one)
        report("per-step", r_per, t_per)
        print(f"max |P(+) one-pass - per-step| = {max_diff(r_one, r_per):.2e}")
        print(f"speed ratio one-pass vs per-step: {t_per / t_one:.2f}x faster "
              f"(PRM tokens read: {sum(r.num_tokens for r in r_per) / sum(r.num_tokens for r in r_one):.2f}x fewer)")

        if not args.skip_vllm:
            from vlprm.prm.scorer import VLLMScorer

            longest = max(r.num_tokens for r in r_one)
            vs = VLLMScorer(model, max_model_len=max(2048, 2 * longest))
            vs.score(warm)
            r_v, t_v = timed(vs, samples)
            report("vllm", r_v, t_v)
            computed = sum(r.extra.get("computed_tokens", 0) for r in r_v)
            prompts = sum(r.extra.get("prompt_tokens", 0) for r in r_v)
            print(f"vllm prefix cache: computed {computed} of {prompts} step-prompt tokens "
                  f"({computed / sum(r.num_tokens for r in r_v):.2f}x a single pass)")
            print(f"max |P(+) vllm - transformers one-pass| = {max_diff(r_v, r_one):.2e}")
            print(f"throughput ratio vllm / transformers one-pass: {t_one / t_v:.2f}x "
                  f"({len(samples) / t_v:.2f} vs {len(samples) / t_one:.2f} samples/s)")


if __name__ == "__main__":
    main()
