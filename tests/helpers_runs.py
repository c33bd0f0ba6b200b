"""Tiny synthesis and evaluation runs driven through their command lines, shared by the worker and
scheduler tests: the smallest settings that still run every stage on the tiny model, and the
1-worker reference runs (computed once per test session) that sharded runs must equal."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vlprm.jobs.pipelines import PIPELINES

REPO = Path(__file__).resolve().parents[1]
# Two families per shard of two, by the shard rule's hash of the problem id (synthesis) and of
# "puzzles/<id>" (evaluation), so every worker has work.
PUZZLE_TYPES = ["venn", "color_grid", "size_cycle", "maze"]


def env(**extra) -> dict[str, str]:
    """The test environment for launcher subprocesses (offline, this interpreter)."""
    return {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", **extra}


def session_dir(prefix: str) -> Path:
    """A temporary directory removed when the test session ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def puzzles_dir() -> Path:
    """Four generated puzzles (two per shard of two)."""
    from vlprm.puzzles import generate_puzzles

    root = session_dir("vlprm-runs-") / "puzzles"
    generate_puzzles(root, len(PUZZLE_TYPES), seed=0, types=PUZZLE_TYPES)
    return root


SYNTH_CONFIG = "rollout_data_generation/configs/tiny.yaml"


def synthesis_args(model: Path) -> list[str]:
    """Overrides of SYNTH_CONFIG (the launchers' CONFIG): 2 solutions per puzzle, short ones, one
    MC continuation per step, no judge."""
    return ["--data.path", str(puzzles_dir()),
            "--data.generate_puzzles", "0", "--policy.model", str(model), "--judge.model", str(model),
            "--policy.n", "2", "--policy.max_tokens", "12", "--mc.k", "1", "--mc.max_tokens", "6",
            "--stages", "rollouts,mc,combine,export", "--export.hf", "false", "--progress", "false"]


def eval_config(model: Path, path: Path) -> Path:
    """A tiny evaluation config: 4 puzzles, N=2 short candidates, the tiny PRM, no step search."""
    path.write_text(json.dumps({  # JSON is YAML
        "mode": "tts", "benchmarks": [{"name": "puzzles", "path": str(puzzles_dir())}],
        "policy": {"backend": "vllm", "model": str(model), "n": 2, "max_tokens": 12, "max_model_len": 2048},
        "prm": {"model": str(model), "backend": "hf", "batch_size": 4, "outcome": False},
        "search": {"strategies": []}, "plots": False, "seed": 0}))
    return path


def run_launcher(launcher: str, extra_env: dict[str, str], *args: str,
                 timeout: int = 900) -> subprocess.CompletedProcess:
    """`bash launcher args` from the repo root with the test environment plus extra_env."""
    return subprocess.run(["bash", launcher, *args], cwd=REPO, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)


@functools.lru_cache(maxsize=None)
def reference_synthesis(model: Path) -> Path:
    """OUT of the 1-worker (unsharded) synthesis run."""
    out = session_dir("vlprm-ref-synth-")
    res = subprocess.run([sys.executable, "rollout_data_generation/run.py", "--config", SYNTH_CONFIG,
                          *synthesis_args(model), "--out", str(out)],
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


@functools.lru_cache(maxsize=None)
def reference_eval(model: Path) -> Path:
    """The output root of the 1-worker (unsharded) evaluation run."""
    root = session_dir("vlprm-ref-eval-")
    cfg = eval_config(model, root / "eval.yaml")
    out_flag = PIPELINES["evaluation"].out_flag
    res = subprocess.run([sys.executable, "eval/run_eval.py", "--config", str(cfg), out_flag, str(root / "out")],
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return root / "out"


def metrics_of(out: Path) -> dict:
    """The metrics.json of the one run directory under an evaluation output root."""
    found = list(out.glob("*/metrics.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def eval_records(out: Path, stem: str) -> dict[str, dict]:
    """{record id: record} of one stage (candidates, scores) over every file of the run."""
    recs = {}
    for p in out.glob(f"*/{stem}*.jsonl"):
        for line in p.read_text().splitlines():
            rec = json.loads(line)
            recs[rec["id"]] = rec
    return recs


def export_rows(out: Path) -> list[str]:
    """The exported PRM training rows of a synthesis run, as written."""
    return (out / "export" / "prm.jsonl").read_text().splitlines()
