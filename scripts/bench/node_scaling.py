#!/usr/bin/env python
"""Node scaling: the same run with 1 worker and with W workers (`vlprm.jobs.workers`), side by side.

Throughput = problems / wall time of the whole command (engine starts, every shard, the merge).
The ratio W-worker / 1-worker throughput is printed next to the target of 0.9 x W. On a GPU node
the W workers are GPU groups (`--gpus 0,1,2,3,4,5,6,7 --gpus-per-worker 1`) and the 1-worker run
gets the first group; without GPUs they are CPU workers on disjoint cores against one worker on
all of them, with the embedded tiny model on generated puzzles. Both runs check that their
exports are identical (same records, whatever the layout).

    python scripts/bench/node_scaling.py                          # CPU: 2 workers, tiny model
    python scripts/bench/node_scaling.py --gpus 0,1,2,3,4,5,6,7 --model Qwen/Qwen2.5-VL-7B-Instruct \
        --problems 400 -- --policy.n 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_layout(out: Path, base: list[str], layout: list[str]) -> float:
    """Wall seconds of one `vlprm.jobs.workers synthesis` run (raises on failure)."""
    cmd = [sys.executable, "-m", "vlprm.jobs.workers", "synthesis", *layout, "--status-every", "60", "--",
           *base, "--out", str(out)]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.time() - t0
    if res.returncode != 0:
        raise SystemExit(f"node_scaling: {' '.join(layout)} failed; see {out / 'logs'}\n{res.stdout[-3000:]}")
    print(res.stdout.splitlines()[-1].strip() if res.stdout else "", file=sys.stderr)
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="CPU workers (without --gpus)")
    p.add_argument("--gpus", help="GPU ids for the W-worker run, e.g. 0,1,2,3,4,5,6,7")
    p.add_argument("--gpus-per-worker", type=int, default=1)
    p.add_argument("--model", help="policy (and judge) model (default: the embedded tiny model)")
    p.add_argument("--problems", type=int, default=16, help="generated puzzles")
    p.add_argument("--out", help="where the runs go (default: a temporary directory)")
    p.add_argument("extra", nargs="*", help="more synthesis overrides (after --)")
    args = p.parse_args()

    if args.model is None:
        from vlprm.models.tiny import ensure_tiny_model

        args.model = str(ensure_tiny_model(Path(os.environ.get("VLPRM_CACHE", REPO / ".cache")) / "tiny-qwen2.5-vl"))
    root = Path(args.out or tempfile.mkdtemp(prefix="vlprm-node-scaling-"))
    from vlprm.puzzles import generate_puzzles

    generate_puzzles(root / "puzzles", args.problems, seed=0)
    base = ["--config", "rollout_data_generation/configs/tiny.yaml", "--data.path", str(root / "puzzles"),
            "--data.generate_puzzles", "0", "--policy.model", args.model, "--judge.model", args.model,
            "--stages", "rollouts,mc,combine,export", "--export.hf", "false", "--progress", "false", *args.extra]
    if args.gpus:
        ids = args.gpus.split(",")
        one = ["--gpus", ",".join(ids[:args.gpus_per_worker]), "--gpus-per-worker", str(args.gpus_per_worker)]
        many = ["--gpus", args.gpus, "--gpus-per-worker", str(args.gpus_per_worker)]
        w = len(ids) // args.gpus_per_worker
    else:
        one, many, w = ["--workers", "1"], ["--workers", str(args.workers)], args.workers
    t1 = run_layout(root / "one", base, one)
    tw = run_layout(root / "many", base, many)
    same = (root / "one" / "export" / "prm.jsonl").read_bytes() == (root / "many" / "export" / "prm.jsonl").read_bytes()
    ratio = t1 / tw
    print(f"problems {args.problems} | 1 worker {t1:.1f} s ({args.problems / t1:.3f}/s) | {w} workers {tw:.1f} s "
          f"({args.problems / tw:.3f}/s) | throughput ratio {ratio:.2f} (target >= {0.9 * w:.2f}) | "
          f"exports identical: {same} | runs in {root}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
