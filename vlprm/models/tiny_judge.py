"""A tiny *judge*: the tiny policy warmed up further on judge-format replies built from generated
puzzles' ground truth, with injected errors.

A random or policy-only tiny model answers the judge prompt with text
`vlprm.synthesis.judge.parse_judge_reply` cannot read, so the quickstart's judge, hybrid and
consensus label views (the paper's method) would be empty. A copy of the tiny policy
(`vlprm.models.tiny_policy`) is therefore trained for a few dozen steps on judge examples: the
judge prompt the synthesis stage sends (`build_judge_messages`) for a puzzle's gold solution, as
is or with one injected error, and the reply's decision line::

    FIRST_ERROR_STEP: <k or none>

(the per-step lines and the VERDICT line a real judge writes are left out: the parser derives
them from the first error, and a two-layer model learns one line in a few dozen steps, where
with more lines it mixes them up). Injected errors, seeded: a wrong boxed option in the last
step (first error: the last step, whose number the prompt states), a perception fact taken from
another puzzle of the same family (first error: that step). Solutions are cut to 3-9 steps (a
policy's are often short; a tiny model repeats digits). A separate checkpoint: training the policy itself on these replies
bleeds into its solutions. Deterministic for a seed.

    python -m vlprm.models.tiny_judge --policy .cache/tiny-policy --out .cache/tiny-judge
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from vlprm.data.schema import Problem, Step

ERROR_KINDS = ("none", "wrong_answer", "wrong_fact")
ERROR_WEIGHTS = (0.5, 0.2, 0.3)
MAX_STEPS = 9
_BOXED_RE = re.compile(r"\\boxed\{[^{}]*\}")


def judge_reply(first_error: int | None) -> str:
    """The decision line of a judge reply (1-based first error step, None = all correct)."""
    return f"FIRST_ERROR_STEP: {'none' if first_error is None else first_error}"


def _family(problem: Problem) -> str:
    md = problem.metadata or {}
    return str(md.get("family") or md.get("puzzle") or "")


def _wrong_answer(steps: list[Step], problem: Problem, rng: random.Random) -> int | None:
    """Box a wrong option letter in the last step; the error is that step."""
    n = len(problem.options or [])
    wrong = [chr(ord("A") + i) for i in range(n) if chr(ord("A") + i) != str(problem.answer).upper()]
    if not wrong or not _BOXED_RE.search(steps[-1].text):
        return None
    steps[-1] = Step(_BOXED_RE.sub(lambda _: f"\\boxed{{{rng.choice(wrong)}}}", steps[-1].text), steps[-1].kind)
    return len(steps)


def _swapped(steps: list[Step], kind: str, donors: Sequence[Problem], rng: random.Random) -> int | None:
    """Replace one step of `kind` (not the last step) by a same-kind step of a donor puzzle
    whose text this solution does not have; the error is that step."""
    field = "perception_facts" if kind == "perception" else "reasoning_steps"
    where = [i for i, s in enumerate(steps[:-1]) if s.kind == kind]
    own = {s.text.strip() for s in steps}
    pool = [t for d in donors for t in (d.metadata or {}).get(field) or [] if t.strip() not in own]
    if not where or not pool:
        return None
    i = rng.choice(where)
    steps[i] = Step(rng.choice(pool), kind)
    return i + 1


def judge_example(problem: Problem, donors: Sequence[Problem], rng: random.Random) -> tuple[list[Step], int | None]:
    """(solution steps, first error step) for one judge training example: the gold solution of
    `problem` split as the synthesis stage splits a policy's, with one injected error or none.
    donors: other puzzles; those of the same family lend wrong steps."""
    from vlprm.models.tiny_policy import gold_solution_text
    from vlprm.steps import split_steps

    steps = list(split_steps(gold_solution_text(problem), "structured"))
    # Solutions of every length from 3 steps on (a policy's are often shorter than gold ones):
    # the first steps and the concluding one.
    keep = rng.randint(3, min(MAX_STEPS, len(steps)))
    steps = steps[:keep - 1] + steps[-1:]
    same = [d for d in donors if _family(d) == _family(problem) and d.id != problem.id]
    kind = rng.choices(ERROR_KINDS, weights=ERROR_WEIGHTS)[0]
    first = None
    if kind == "wrong_answer":
        first = _wrong_answer(steps, problem, rng)
    elif kind == "wrong_fact":
        first = _swapped(steps, "perception", same, rng)
    return steps, first


def judge_chat(problem: Problem, steps: Sequence[Step], first_error: int | None) -> list[dict[str, Any]]:
    """The judge conversation the synthesis stage sends, with the reply appended."""
    from vlprm.prompts import build_judge_messages

    msgs = build_judge_messages(problem, list(steps))
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": judge_reply(first_error)}]})
    return msgs


JUDGE_RECIPE_VERSION = 2


def build_tiny_judge(out_dir: str | os.PathLike, policy_dir: str | os.PathLike, *, n_examples: int = 60,
                     steps: int = 30, batch_size: int = 6, lr: float = 3e-3, seed: int = 0) -> Path:
    """Train a copy of the tiny policy on n_examples judge examples for `steps` steps (learning
    rate decaying from lr to 0) into out_dir and return the path."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from vlprm.data.benchmarks import load_benchmark
    from vlprm.models.tiny_policy import _batches, _encode, _train
    from vlprm.prm.format import LabelTokens
    from vlprm.puzzles import generate_puzzles

    t0 = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    header = LabelTokens.from_tokenizer(processor.tokenizer).header_ids
    with tempfile.TemporaryDirectory() as tmp:
        # Puzzles of their own seed: never the ones a quickstart synthesizes from or evaluates on.
        generate_puzzles(tmp, n_examples, seed=20_000 + seed)
        problems = load_benchmark("puzzles", tmp)
        data = [_encode(processor, judge_chat(p, *judge_example(p, problems, rng)), p.images, header)
                for p in problems]
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=steps)
    batches: list[list] = []
    while len(batches) < steps:
        batches += _batches([data], batch_size, rng)
    losses: list[float] = []
    _train(model, batches[:steps], opt, sched, processor.tokenizer.pad_token_id, losses, "judge", 10)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    meta = {"judge_recipe_version": JUDGE_RECIPE_VERSION, "policy_build": _policy_build(policy_dir), "seed": seed,
            "n_examples": len(data), "steps": len(losses), "first_loss": losses[0],
            "final_loss": sum(losses[-5:]) / min(5, len(losses)), "seconds": round(time.time() - t0, 1)}
    (out / "vlprm_tiny_judge.json").write_text(json.dumps(meta, indent=1))
    print(f"[tiny-judge] {len(losses)} steps, loss {meta['first_loss']:.2f} -> {meta['final_loss']:.2f} "
          f"in {meta['seconds']} s", flush=True)
    return out


def _policy_build(policy_dir: str | os.PathLike) -> str | None:
    """Which build of the policy a judge was trained from (a hash of the policy's build record)."""
    meta = Path(policy_dir) / "vlprm_tiny_policy.json"
    return hashlib.sha256(meta.read_bytes()).hexdigest()[:16] if meta.is_file() else None


def ensure_tiny_judge(out_dir: str | os.PathLike, policy_dir: str | os.PathLike, seed: int = 0, **kw) -> Path:
    """Build the tiny judge into out_dir unless a build from this very policy build is there
    (atomic rename)."""
    from vlprm.models.tiny import ensure_built

    want = {"judge_recipe_version": JUDGE_RECIPE_VERSION, "seed": seed, "policy_build": _policy_build(policy_dir)}
    return ensure_built(out_dir, "vlprm_tiny_judge.json", want,
                        lambda tmp: build_tiny_judge(tmp, policy_dir, seed=seed, **kw))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Warm the tiny policy up into a tiny judge.")
    p.add_argument("--policy", required=True, help="the tiny policy directory (vlprm.models.tiny_policy)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    path = ensure_tiny_judge(args.out, args.policy, seed=args.seed, steps=args.steps)
    print(f"tiny judge ready at {path}")


__all__ = ["ERROR_KINDS", "judge_reply", "judge_example", "judge_chat", "build_tiny_judge", "ensure_tiny_judge"]


if __name__ == "__main__":
    main()
