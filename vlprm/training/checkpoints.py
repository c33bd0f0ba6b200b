"""Checkpoints a kill cannot break: a checkpoint counts only once it is marked complete.

transformers' Trainer writes `output_dir/checkpoint-N/` file by file (model, DeepSpeed's
`global_stepN/` shards and `latest`, RNG states, trainer_state.json), and resuming takes the
highest N whatever it holds, so a job killed mid-save (a scheduler's walltime) cannot resume.
`PRMTrainer` writes `vlprm_checkpoint.json` into a checkpoint once every rank has finished it
(`mark_complete`); it lists every file with its size. `resolve_resume("last", ...)` takes the
newest checkpoint whose marker matches its files, logs which, and sets every torn one aside as
`torn-checkpoint-N` (kept for inspection, out of the Trainer's `checkpoint-*` rotation and out
of the way of the step that will be saved again).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from vlprm.config import ConfigError

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "vlprm_checkpoint.json"
TORN_PREFIX = "torn-"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR-N
_RESUME_LAST = ("last", "true", "latest")
_NO_RESUME = ("", "false", "none")


def _file_sizes(ckpt: Path) -> dict[str, int]:
    return {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*"))
            if p.is_file() and p.name != COMPLETE_MARKER}


def mark_complete(ckpt: str | os.PathLike, global_step: int) -> Path:
    """Write the completion marker of `ckpt` (call once every rank has finished writing it).
    The marker is written to a temporary name and renamed, so it is never half there."""
    ckpt = Path(ckpt)
    marker = ckpt / COMPLETE_MARKER
    tmp = ckpt / (COMPLETE_MARKER + ".tmp")
    record = {"global_step": global_step, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "files": _file_sizes(ckpt)}
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    return marker


def why_incomplete(ckpt: str | os.PathLike) -> str | None:
    """None when `ckpt` is complete (its marker lists files that are all there, at their
    sizes); else the reason it does not count."""
    ckpt = Path(ckpt)
    marker = ckpt / COMPLETE_MARKER
    if not marker.is_file():
        return f"no {COMPLETE_MARKER} (the save did not finish: killed or failed mid-save)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable {COMPLETE_MARKER}: {e}"
    for name, size in files.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when the checkpoint was saved"
    return None


@dataclass
class CheckpointScan:
    """The checkpoint-N dirs of an output dir, newest first, split into complete and torn."""

    complete: list[Path]
    torn: list[tuple[Path, str]]  # (dir, reason)


def scan_checkpoints(output_dir: str | os.PathLike) -> CheckpointScan:
    """Every `checkpoint-N` directory of `output_dir`, newest (highest N) first."""
    root = Path(output_dir)
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir()
             for m in [_CHECKPOINT_DIR.match(p.name)] if m] if root.is_dir() else []
    scan = CheckpointScan([], [])
    for _, path in sorted(found, reverse=True):
        reason = why_incomplete(path)
        if reason is None:
            scan.complete.append(path)
        else:
            scan.torn.append((path, reason))
    return scan


def set_aside(ckpt: Path) -> Path:
    """Rename a torn checkpoint to `torn-checkpoint-N` (`-2`, `-3`, ... if taken); never delete it."""
    target = ckpt.with_name(TORN_PREFIX + ckpt.name)
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"{TORN_PREFIX}{ckpt.name}-{n}")
    ckpt.rename(target)
    return target


def resolve_resume(spec: str | bool | None, output_dir: str | os.PathLike, *, set_aside_torn: bool = True
                   ) -> str | None:
    """--resume_from_checkpoint: "last" (or "true"/"latest") -> the newest complete checkpoint
    in output_dir (None, with a warning, when there is none yet: a requeued job can always pass
    "last"); a directory -> that checkpoint, if complete. Torn checkpoints are reported and,
    with `set_aside_torn` (one process only: the launcher or the main rank), renamed aside."""
    if spec is None or spec is False or str(spec).lower() in _NO_RESUME:
        return None
    if spec is True or str(spec).lower() in _RESUME_LAST:
        scan = scan_checkpoints(output_dir)
        for path, reason in scan.torn:
            moved = set_aside(path) if set_aside_torn else path
            logger.warning("checkpoint %s is torn and does not count: %s%s", path, reason,
                           f"; kept as {moved}" if moved != path else "")
        if not scan.complete:
            logger.warning("resume_from_checkpoint=%s: no complete checkpoint in %s yet, starting from scratch",
                           spec, output_dir)
            return None
        logger.info("resuming from %s, the last complete checkpoint", scan.complete[0])
        return str(scan.complete[0])
    path = Path(str(spec))
    if not path.is_dir():
        raise ConfigError(f"resume_from_checkpoint: {spec} is not a directory; pass a checkpoint dir or 'last'")
    reason = why_incomplete(path)
    if reason is not None:
        raise ConfigError(f"resume_from_checkpoint: {spec} is not a complete checkpoint ({reason}); "
                          "pass another checkpoint dir or 'last' (the newest complete one)")
    return str(path)
