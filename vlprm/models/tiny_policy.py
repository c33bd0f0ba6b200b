"""A tiny *policy*: the embedded tiny Qwen2.5-VL warmed up on gold puzzle solutions.

A random-weight policy writes noise, so every solution is wrong and nothing downstream (MC
labels, PRM training, best-of-N) has anything to separate. A couple of minutes of teacher-forced
training on generated puzzles' gold solutions (perception facts, then reasoning steps, then a
boxed letter) teaches it the structured format; being tiny, it still gets many answers wrong,
which is what a policy for PRM data synthesis should look like. Deterministic for a seed.
`vlprm.models.tiny_judge` trains a copy of it further into the quickstart's tiny judge.

    python -m vlprm.models.tiny_policy --out .cache/tiny-policy
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from vlprm.models.tiny import RECIPE_VERSION, ensure_built, ensure_tiny_model

POLICY_RECIPE_VERSION = 1  # the same weights as before the training loop was shared with tiny_judge


def gold_solution_text(problem) -> str:
    """The structured solution a perfect policy would write for a generated puzzle."""
    from vlprm.data.schema import Step
    from vlprm.steps import join_steps

    md = problem.metadata or {}
    facts = md.get("perception_facts") or []
    reasoning = list(md.get("reasoning_steps") or [])
    if not facts or not reasoning:
        raise ValueError(f"puzzle {problem.id} has no gold perception_facts/reasoning_steps")
    reasoning[-1] = reasoning[-1].rstrip() + f" Therefore, the final answer is \\boxed{{{problem.answer}}}."
    steps = [Step(f, "perception") for f in facts] + [Step(r, "reasoning") for r in reasoning]
    return join_steps(steps, "structured")


def _encode(processor, messages: list[dict], images: list, header_ids: list[int]):
    """Token ids and labels of a chat whose last message is the assistant's (loss on it only)."""
    from vlprm.backends.base import load_image, text_only_messages
    from vlprm.prm.format import LabelTokens, find_label_positions

    text = processor.apply_chat_template(text_only_messages(messages), tokenize=False)
    enc = processor(text=[text], images=[load_image(p) for p in images], return_tensors="pt")
    ids = enc["input_ids"][0]
    start = find_label_positions(ids.tolist(), LabelTokens(0, 0, header_ids))[-1]
    labels = ids.clone()
    labels[:start] = -100  # loss on the assistant answer only
    out = {"input_ids": ids, "labels": labels, "pixel_values": enc["pixel_values"],
           "image_grid_thw": enc["image_grid_thw"]}
    if "mm_token_type_ids" in enc:  # needed for the 3-D (mrope) positions of image tokens
        out["mm_token_type_ids"] = enc["mm_token_type_ids"][0]
    return out


def _policy_chat(problem) -> list[dict]:
    from vlprm.prompts import build_policy_messages

    msgs = build_policy_messages(problem, "structured")
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": gold_solution_text(problem)}]})
    return msgs


def _batches(tasks: list[list], batch_size: int, rng: random.Random) -> list[list]:
    """One epoch of batches, each from one task, in a shuffled order."""
    out = []
    for data in tasks:
        order = list(range(len(data)))
        rng.shuffle(order)
        out += [[data[i] for i in order[b:b + batch_size]] for b in range(0, len(order), batch_size)]
    rng.shuffle(out)
    return out


def _collate(items, pad_id):
    import torch

    n = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), -100, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    mm = torch.zeros((len(items), n), dtype=torch.long)
    for i, x in enumerate(items):
        L = len(x["input_ids"])
        ids[i, :L], labels[i, :L], mask[i, :L] = x["input_ids"], x["labels"], 1
        if "mm_token_type_ids" in x:
            mm[i, :L] = x["mm_token_type_ids"]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask,
             "pixel_values": torch.cat([x["pixel_values"] for x in items]),
             "image_grid_thw": torch.cat([x["image_grid_thw"] for x in items])}
    if "mm_token_type_ids" in items[0]:
        batch["mm_token_type_ids"] = mm
    return batch


def _train(model, batches, opt, sched, pad_id: int, losses: list, tag: str, log_every: int) -> None:
    """Teacher-forced steps over `batches`, appending each loss to `losses`."""
    import torch

    for items in batches:
        loss = model(**_collate(items, pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        if log_every and len(losses) % log_every == 0:
            print(f"[tiny-{tag}] step {len(losses)} loss {sum(losses[-log_every:]) / log_every:.3f}", flush=True)


def build_tiny_policy(out_dir: str | os.PathLike, *, base_dir: str | os.PathLike | None = None,
                      n_puzzles: int = 180, epochs: int = 3, batch_size: int = 6, lr: float = 3e-3,
                      seed: int = 0, log_every: int = 20) -> Path:
    """Train the tiny policy into out_dir (model + processor) and return the path."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from vlprm.data.benchmarks import load_benchmark
    from vlprm.prm.format import LabelTokens
    from vlprm.puzzles import generate_puzzles

    out = Path(out_dir)
    base = Path(base_dir) if base_dir else ensure_tiny_model(out.parent / "tiny-qwen2.5-vl")
    t0 = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        # A seed of our own, so the policy never trains on the puzzles a quickstart evaluates.
        generate_puzzles(tmp, n_puzzles, seed=10_000 + seed)
        problems = load_benchmark("puzzles", tmp)
        processor = AutoProcessor.from_pretrained(base)
        header = LabelTokens.from_tokenizer(processor.tokenizer).header_ids
        data = [_encode(processor, _policy_chat(p), p.images, header) for p in problems]
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    n_steps = epochs * ((len(data) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n_steps, pct_start=0.1)
    losses: list[float] = []
    for _ in range(epochs):
        order = list(range(len(data)))
        rng.shuffle(order)
        _train(model, [[data[i] for i in order[b:b + batch_size]] for b in range(0, len(order), batch_size)],
               opt, sched, processor.tokenizer.pad_token_id, losses, "policy", log_every)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    meta = {"recipe_version": RECIPE_VERSION, "policy_recipe_version": POLICY_RECIPE_VERSION,
            "seed": seed, "n_puzzles": n_puzzles, "epochs": epochs, "steps": len(losses),
            "first_loss": losses[0], "final_loss": sum(losses[-10:]) / min(10, len(losses)),
            "seconds": round(time.time() - t0, 1)}
    (out / "vlprm_tiny_policy.json").write_text(json.dumps(meta, indent=1))
    print(f"[tiny-policy] {len(losses)} steps, loss {meta['first_loss']:.2f} -> {meta['final_loss']:.2f} "
          f"in {meta['seconds']} s", flush=True)
    return out


def ensure_tiny_policy(out_dir: str | os.PathLike, seed: int = 0, **kw) -> Path:
    """Build the tiny policy into out_dir unless an up-to-date build is there (atomic rename)."""
    want = {"policy_recipe_version": POLICY_RECIPE_VERSION, "recipe_version": RECIPE_VERSION, "seed": seed}
    return ensure_built(out_dir, "vlprm_tiny_policy.json", want, lambda tmp: build_tiny_policy(tmp, seed=seed, **kw))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Warm up the tiny Qwen2.5-VL into a tiny puzzle policy.")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-puzzles", type=int, default=180)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    if args.force and Path(args.out).exists():
        shutil.rmtree(args.out)
    path = ensure_tiny_policy(args.out, seed=args.seed, n_puzzles=args.n_puzzles, epochs=args.epochs)
    print(f"tiny policy ready at {path}")


if __name__ == "__main__":
    main()
