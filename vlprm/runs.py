"""The run layer every long job sits on (synthesis, evaluation, experiments).

One set of rules, used by every pipeline:

- **Run dir and shard rule.** A run writes into one directory. A `--shard i/n` job takes the
  items whose key hashes to shard i (`in_shard`) and writes its own files, named by
  `shard_tag` ("rollouts.shard0of4.jsonl"), so concurrent jobs never append to one file.
  Readers merge every file of a stage by key (`read_stage`): running the last stage after all
  shards finish is the merge, and a resume with another layout redoes nothing.
- **Done / failed records.** A record is `{"id", "status": "ok" | "failed", "reason",
  "detail", ...}` (`failed_record`). A record on disk is done; a failed one stays failed (and
  the summary says so, naming `--retry_failed`) unless the run retries failed records.
- **Chunks** come from config keys (`chunks`); **summaries** are `StageSummary` rows printed
  by one printer (`format_summary`).
- **skipped.jsonl** lists every skipped input record and every failed record of the run
  (stage, benchmark, file, id, reason), recomputed at the end of every run.
- **CLI**: `cli_main` loads YAML + dotted overrides, prints `--help` with every key, turns a
  config mistake into one line and exit 2, a run that cannot produce its result into one line
  and exit 1, and sends the full log to RUN/logs/run.log.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from vlprm.data.benchmarks.common import image_cache_for as image_cache_dir  # noqa: F401 (re-export)
from vlprm.data.store import StoreWriteError, corrupt_lines_seen, in_shard, parse_shard, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

__all__ = ["RunError", "in_shard", "parse_shard", "shard_tag", "stage_files", "read_stage", "failed_record",
           "is_failed", "is_done", "classify_error", "chunks", "StageSummary", "format_summary",
           "skipped_entries", "write_skipped", "prepare_run_dir", "attach_run_log", "setup_logging", "cli_main"]


class RunError(RuntimeError):
    """A run that cannot produce its result (a benchmark with 0 problems, 0 scored steps):
    entry points print its message as one line and exit 1."""


# --------------------------------------------------------------------------- shard rule


def shard_tag(shard: str | None, only: Sequence[str] | None = None) -> str:
    """The suffix of this job's files: its item subset (`only`, e.g. benchmarks) and its shard;
    "" for an unsharded run over everything."""
    i, n = parse_shard(shard)
    parts = []
    if only:
        parts.append("+".join(sorted(re.sub(r"[^A-Za-z0-9_-]+", "-", b) for b in only)))
    if n > 1:
        parts.append(f"shard{i}of{n}")
    return "".join("." + x for x in parts)


def stage_file(run_dir: str | os.PathLike, stem: str, tag: str = "") -> Path:
    """This job's file of a stage."""
    return Path(run_dir) / f"{stem}{tag}.jsonl"


def stage_files(run_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Every job's file of a stage: `stem.jsonl` and `stem.<tag>.jsonl` (stems hold no dots, so
    another stem that merely starts with this one never matches)."""
    base = glob.escape(str(Path(run_dir) / stem))
    return sorted(Path(p) for p in glob.glob(base + ".jsonl") + glob.glob(base + ".*.jsonl"))


def read_stage(run_dir: str | os.PathLike, stem: str, key: str = "id") -> dict[str, dict]:
    """Every record of a stage, merged by key over all jobs' files (last write wins)."""
    out: dict[str, dict] = {}
    for p in stage_files(run_dir, stem):
        for rec in read_jsonl(p):
            if key in rec:
                out[str(rec[key])] = rec
    return out


# --------------------------------------------------------------------------- records


def classify_error(message: str | None) -> str:
    """A short failure reason for a backend error message (what summaries count)."""
    m = (message or "").lower()
    if "cannot read image" in m or "image" in m and ("not found" in m or "cannot" in m):
        return "image_unreadable"
    if "http" in m or "attempts" in m or "connection" in m or "timeout" in m:
        return "http_error"
    return "generation_error"


def failed_record(id: str, reason: str, detail: str | None = None, **fields: Any) -> dict:
    """The record of an item that failed: kept, counted, and retried only on request."""
    return {"id": id, **fields, "status": "failed", "reason": reason, "detail": detail}


def is_failed(rec: dict) -> bool:
    """Whether a record is a failure (old evaluation records mark one with an `error` field)."""
    if "status" in rec:
        return rec["status"] != "ok"
    return bool(rec.get("error"))


def is_done(rec: dict | None, retry_failed: bool) -> bool:
    """A record on disk is done, unless it failed and the run retries failed records."""
    return rec is not None and not (retry_failed and is_failed(rec))


def chunks(items: Sequence, size: int) -> list[list]:
    """Fixed-size chunks (the resume unit: a kill loses at most one chunk of work)."""
    size = max(1, int(size))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- summaries


@dataclass
class StageSummary:
    """What one stage did in this run."""

    name: str
    done_before: int = 0
    failed_before: int = 0  # records that failed in an earlier run and were not retried
    written: int = 0
    failed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    note: str = ""

    def count(self, rec: dict) -> None:
        """Count one written record (its failure reason when it failed)."""
        self.written += 1
        if is_failed(rec):
            self.failed[rec.get("reason") or classify_error(rec.get("error"))] += 1

    def to_dict(self) -> dict:
        return {"new": self.written, "done_before": self.done_before, "failed_before": self.failed_before,
                "failed": dict(self.failed), "seconds": round(self.seconds, 1), "note": self.note}


def format_summary(title: str, summaries: Iterable[StageSummary], seconds: float, extra: Sequence[str] = ()) -> str:
    """The end-of-run summary: one line per stage, then what the user can do about failures."""
    lines = [title]
    kept = 0
    for s in summaries:
        fails = ", ".join(f"{k}: {v}" for k, v in s.failed.most_common()) or "none"
        lines.append(f"  {s.name:<13} written {s.written:>6}  already done {s.done_before:>6}  "
                     f"failed [{fails}]  {s.seconds:7.1f} s  {s.note}".rstrip())
        if s.failed_before:
            lines.append(f"  {'':<13} {s.failed_before} record(s) failed in an earlier run and stay failed: "
                         "rerun with --retry_failed to retry them")
            kept += s.failed_before
    lines += [f"  {x}" for x in extra]
    for path, bad in corrupt_lines_seen().items():
        lines.append(f"  {path}: {len(bad)} corrupt line(s) skipped (line {', '.join(map(str, bad[:5]))}"
                     f"{', ...' if len(bad) > 5 else ''}); their records were redone")
    lines.append(f"  total time {seconds:.1f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- skipped.jsonl


def skipped_entries(report, stage: str = "load") -> list[dict]:
    """The skipped records of a benchmark `LoadReport`: benchmark, file, id, reason."""
    files = getattr(report, "skipped_files", None) or [report.source] * len(report.skipped)
    return [{"stage": stage, "benchmark": report.benchmark, "file": f, "id": rid, "reason": reason}
            for (rid, reason), f in zip(report.skipped, files)]


def failed_entries(records: Iterable[dict], stage: str, file: str, benchmark: str | None = None) -> list[dict]:
    """The failed records of a stage file as skipped.jsonl entries."""
    return [{"stage": stage, "benchmark": r.get("benchmark", benchmark), "file": file, "id": r["id"],
             "reason": r.get("reason") or classify_error(r.get("error")), "detail": r.get("detail", r.get("error"))}
            for r in records if is_failed(r)]


def write_skipped(run_dir: str | os.PathLike, entries: Sequence[dict], tag: str = "") -> Path:
    """Write the run's skipped.jsonl (this job's: skipped<tag>.jsonl), replacing the last one:
    it lists what is skipped or failed now, so a retried record leaves it."""
    path = stage_file(run_dir, "skipped", tag)
    write_jsonl(path, entries)
    if entries:
        by = Counter(f"{e['stage']}: {e['reason'].split(':')[0][:60]}" for e in entries)
        log.info("%d skipped or failed record(s) listed in %s (%s)", len(entries), path,
                 ", ".join(f"{k} x{v}" for k, v in by.most_common(5)))
    return path


# --------------------------------------------------------------------------- logging


class _Once(logging.Filter):
    """Lets a third-party warning through once: the same (logger, message template) repeated
    by a library adds nothing to a log a person reads."""

    def __init__(self):
        super().__init__()
        self.seen: set[tuple[str, Any]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("vlprm") or record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.msg)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_ONCE = _Once()


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (a test harness or a notebook may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass
_FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Console logging for an entry point: short lines, a third-party message shown once, and
    vLLM logging through the same handlers (not its own) so that rule and RUN/logs/run.log
    cover it too."""
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    root = logging.getLogger()
    if not any(getattr(h, "vlprm_console", False) for h in root.handlers):
        h = _Stderr()
        h.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        h.addFilter(_ONCE)
        h.vlprm_console = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(min(root.level or level, level))
    logging.getLogger("vlprm").setLevel(level)
    from vlprm.secrets import install_log_redaction

    install_log_redaction()  # no configured secret reaches a console or a log file


def prepare_run_dir(run_dir: str | os.PathLike, key: str) -> Path:
    """Check the run dir (one line naming `key` when it is a file, unwritable or on a full
    disk), create it and send the full log to RUN/logs/run.log."""
    from vlprm.paths import check_output_dir

    run_dir = check_output_dir(run_dir, key)
    run_dir.mkdir(parents=True, exist_ok=True)
    attach_run_log(run_dir)
    return run_dir


def attach_run_log(run_dir: str | os.PathLike) -> Path:
    """Send the full log (every level, every library) to RUN/logs/run.log."""
    path = Path(run_dir) / "logs" / "run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "vlprm_run_log", None) == str(path):
            return path
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(logging.Formatter(_FMT))
    h.vlprm_run_log = str(path)  # type: ignore[attr-defined]
    root.addHandler(h)
    from vlprm.secrets import install_log_redaction

    install_log_redaction()
    return path


# --------------------------------------------------------------------------- CLI


def split_config_arg(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the --config path, the other arguments)."""
    from vlprm.config import ConfigError

    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a YAML path")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if a.startswith("--config="):
            return a.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def bare_flags(cls: type, argv: Sequence[str]) -> list[str]:
    """`--retry_failed` alone (a top-level true/false key followed by nothing or another
    option) means `--retry_failed true`."""
    import dataclasses
    import typing

    flags = {f"--{f.name}" for f in dataclasses.fields(cls) if typing.get_type_hints(cls)[f.name] is bool}
    out: list[str] = []
    for i, a in enumerate(argv):
        out.append(a)
        if a in flags and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("true")
    return out


def cli_main(cls: type, argv: Sequence[str] | None, run: Callable[[Any], Any], usage: str) -> int:
    """An entry point: `--help` lists every key of `cls`; YAML + dotted overrides build the
    config; a config mistake is one line and exit 2, a `RunError` one line and exit 1."""
    from vlprm.config import ConfigError, config_help, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(usage.rstrip() + "\n\nconfig keys:\n" + config_help(cls))
        return 0
    setup_logging()
    try:
        path, rest = split_config_arg(argv)
        cfg = load_config(cls, path, bare_flags(cls, rest))
    except OSError as e:
        print(f"error: cannot read the config {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:  # ConfigError and the validators' checks
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RunError, StoreWriteError) as e:  # StoreWriteError: a full disk; what was written is kept
        print(f"error: {e}", file=sys.stderr)
        return 1
    log.debug("finished in %.1f s", time.time() - t0)
    return 0
