"""Merge the shards of a synthesis run, then run combine + export on everything.

Shard jobs (`--shard i/n`) write their own files into OUT (OUT/rollouts.shard0of4.jsonl, ...);
combine and export read every shard's files, so the merge is a run of those two stages without
--shard. Run dirs of the old layout (one directory per shard, OUT/shards/i-of-n/) are joined by
key into OUT first; their shard directory is then renamed OUT/shards.joined so no later run
reads it twice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

from vlprm.data.schema import Problem
from vlprm.data.store import merge_jsonl, read_jsonl, write_jsonl
from vlprm.synthesis.pipeline import Synthesis, run_synthesis

log = logging.getLogger(__name__)


def join_old_layout(run_dir: Path, shard_dirs: Sequence[Path]) -> None:
    """Join old-layout shard directories' stage files by key into run_dir."""
    for name in ("problems.jsonl", "rollouts.jsonl", "mc.jsonl", "judge.jsonl"):
        files = [d / name for d in shard_dirs if (d / name).exists()]
        if name == "problems.jsonl":
            # Image paths are relative to each shard's dir: make them relative to run_dir.
            recs = []
            for f in files:
                for r in read_jsonl(f):
                    p = Problem.from_dict(r).resolve_images(f.parent)
                    rel = [os.path.relpath(i, run_dir) for i in p.images]
                    recs.append(dataclasses.replace(p, images=rel).to_dict())
            write_jsonl(run_dir / name, sorted({r["id"]: r for r in recs}.values(), key=lambda r: r["id"]))
        elif files:
            merge_jsonl(files, run_dir / name)


def _config_file(run_dir: Path, shard_dirs: Sequence[Path]) -> Path:
    for cand in [run_dir / "config.yaml", *sorted(run_dir.glob("config.*.yaml")),
                 *(d / "config.yaml" for d in shard_dirs)]:
        if cand.exists():
            return cand
    raise FileNotFoundError(f"no config.yaml in {run_dir} or its shards; pass one with --config")


def merge_shards(run_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike] | None = None,
                 stages: Sequence[str] = ("combine", "export"), config: str | os.PathLike | None = None) -> Synthesis:
    """Run `stages` (combine + export) on every shard's records of run_dir. Old-layout shard
    directories (inputs, default run_dir/shards/*-of-*/) are joined into run_dir first."""
    import yaml

    from vlprm.config import build_dataclass
    from vlprm.synthesis.config import SynthesisConfig

    run_dir = Path(run_dir)
    old = [Path(p) for p in inputs] if inputs else sorted(p for p in (run_dir / "shards").glob("*-of-*") if p.is_dir())
    cfg_path = Path(config) if config else _config_file(run_dir, old)
    if old:
        join_old_layout(run_dir, old)
        if not inputs:
            (run_dir / "shards").rename(run_dir / "shards.joined")
        log.info("joined %d old-layout shard directories into %s", len(old), run_dir)
    data = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    data.update(out=str(run_dir), shard=None, stages=list(stages))
    cfg = build_dataclass(SynthesisConfig, data).validate()
    return run_synthesis(cfg)
