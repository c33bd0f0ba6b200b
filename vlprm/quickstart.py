"""The whole pipeline on the embedded tiny model, on a CPU, in minutes:

    puzzles -> tiny policy -> synthesis (rollouts, MC, judge, combine, export)
            -> PRM training (train/sft_qwen.sh, DeepSpeed) -> evaluation with the trained PRM
            -> a metrics table and a plot

Each stage is the same command a researcher runs on real models (printed before it runs), in
its own process so engines and memory are released between stages. Every stage resumes: a
second quickstart reuses what the first one finished.

    bash scripts/quickstart.sh            # = python -m vlprm.quickstart
    python -m vlprm.quickstart --out outputs/quickstart --n-train 24 --n-eval 12
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict | None = None, title: str = "") -> None:
    print(f"\n=== {title}\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **(env or {})})
    print(f"=== {title}: done in {time.time() - t0:.0f} s", flush=True)


def _show_solutions(rollouts: Path, k: int = 2) -> None:
    """Print a few sampled solutions of the tiny policy (what the synthesis started from)."""
    from vlprm.data.store import read_jsonl

    shown = 0
    for rec in read_jsonl(rollouts):
        if rec.get("status") != "ok":
            continue
        print(f"\n--- {rec['id']} (answer {rec.get('final_answer')!r}, correct={rec.get('correct')})")
        print(rec["text"][:700])
        shown += 1
        if shown >= k:
            break


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/quickstart", help="where everything is written")
    p.add_argument("--cache", default=os.environ.get("VLPRM_CACHE", ".cache"), help="tiny model cache dir")
    p.add_argument("--n-train", type=int, default=24, help="generated puzzles for PRM data synthesis")
    p.add_argument("--n-eval", type=int, default=12, help="generated puzzles for evaluation")
    p.add_argument("--n", type=int, default=8, help="N_max candidates per evaluation problem")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.time()
    py = sys.executable
    out = (REPO / args.out).resolve() if not os.path.isabs(args.out) else Path(args.out)
    cache = (REPO / args.cache).resolve() if not os.path.isabs(args.cache) else Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

    # 1. the embedded models: a random tiny Qwen2.5-VL, the tiny policy warmed up from it on gold
    #    puzzle solutions, and the tiny judge warmed up from the policy on judge replies
    base, policy, judge = cache / "tiny-qwen2.5-vl", cache / "tiny-policy", cache / "tiny-judge"
    _run([py, "-m", "vlprm.models.tiny", "--out", str(base)], env, "1/6 tiny Qwen2.5-VL")
    _run([py, "-m", "vlprm.models.tiny_policy", "--out", str(policy)], env,
         "2/6 tiny policy (warm-up on gold puzzle solutions; cached after the first run)")
    _run([py, "-m", "vlprm.models.tiny_judge", "--policy", str(policy), "--out", str(judge)], env,
         "2/6 tiny judge (the policy warmed up on judge replies to solutions with injected errors; cached)")

    # 2. puzzles: one set to synthesize PRM data from, another to evaluate on
    train_pz, eval_pz = out / "puzzles-train", out / "puzzles-eval"
    _run([py, "-m", "vlprm.puzzles", "generate", "--out", str(train_pz), "--n", str(args.n_train),
          "--seed", str(args.seed)], env, "3/6 puzzles")
    _run([py, "-m", "vlprm.puzzles", "generate", "--out", str(eval_pz), "--n", str(args.n_eval),
          "--seed", str(args.seed + 1)], env, "3/6 puzzles (evaluation set)")

    # 3. synthesis: rollouts of the tiny policy, MC labels, the tiny judge (a weak one), exported
    #    as the paper's hybrid labels
    synth = out / "synthesis"
    _run(["bash", "rollout_data_generation/run.sh",
          "--out", str(synth), "--seed", str(args.seed),
          "--data.benchmark", "puzzles", "--data.path", str(train_pz),
          "--policy.model", str(policy), "--judge.model", str(judge)],
         {**env, "CONFIG": "rollout_data_generation/configs/quickstart.yaml"}, "4/6 PRM data synthesis")
    _show_solutions(synth / "rollouts.jsonl")
    report = synth / "report.md"
    if report.exists():
        print("\n" + report.read_text()[:2500])

    # 4. training: the real launcher (accelerate + DeepSpeed ZeRO-2), on CPU here
    prm = out / "prm"
    export_file = synth / "export" / "prm.jsonl"
    trained = prm / "vlprm_prm.json"
    if trained.exists() and trained.stat().st_mtime > export_file.stat().st_mtime:
        print(f"\n=== 5/6 PRM training: {prm} is newer than the training set; reusing it "
              f"(delete it to retrain)", flush=True)
    else:
        _run(["bash", "train/sft_qwen.sh", "--num_train_epochs", "6", "--learning_rate", "1e-3",
              "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
              "--min_pixels", str(4 * 28 * 28), "--max_pixels", str(64 * 28 * 28), "--gradient_checkpointing", "false",
              "--report_to", "none", "--eval_fraction", "0.2", "--save_strategy", "no", "--logging_steps", "4"],
             {**env, "MODEL": str(policy), "DATA": str(synth / "export"), "OUTPUT_DIR": str(prm), "NUM_GPUS": "1"},
             "5/6 PRM training")
        # A new PRM: the previous evaluations' scores belong to the old one.
        for old in (out / "eval").glob("tiny*"):
            shutil.rmtree(old, ignore_errors=True)

    # 5. evaluation with the trained PRM: best-of-N, weighted, majority, greedy, beam, DVTS
    eval_out = out / "eval"
    # Named by N and seed: a run with another --n or --seed must not resume (and be skipped by)
    # one whose candidates were sampled with different settings.
    run_name = f"tiny_N{args.n}_seed{args.seed}"
    _run([py, "eval/run_eval.py", "--config", "eval/configs/tiny.yaml",
          "--benchmarks", json.dumps([{"name": "puzzles", "path": str(eval_pz)}]),
          "--policy.model", str(policy), "--prm.model", str(prm), "--policy.n", str(args.n),
          "--output_root", str(eval_out), "--run_name", run_name, "--seed", str(args.seed)],
         env, "6/6 evaluation")

    run_dir = eval_out / run_name
    print("\n" + "=" * 72)
    print(f"quickstart finished in {time.time() - t0:.0f} s")
    print(f"  sampled solutions + labels: {synth}/rollouts.jsonl, {synth}/combined.jsonl")
    print(f"  PRM training set:           {synth}/export (report: {report})")
    print(f"  trained PRM:                {prm}")
    print(f"  metrics table:              {run_dir}/metrics.md")
    for png in sorted((run_dir / "plots").glob("*.png")):
        print(f"  plot:                       {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
