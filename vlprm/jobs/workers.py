"""Use every GPU of a node: one worker process per GPU group, each a shard of one run, then the merge.

    python -m vlprm.jobs.workers evaluation --gpus 0,1,2,3 --gpus-per-worker 2 -- --config C
    python -m vlprm.jobs.workers synthesis --workers 2 -- --config C --out OUT   # 2 CPU workers

Each worker runs `--shard i/n` of the run through the pipeline's own command line, pinned with
CUDA_VISIBLE_DEVICES (CPU workers get disjoint cores instead), and logs to OUT/logs/worker-i.log.
When every worker succeeded the merge runs. A worker that fails is reported with its log and
the command that re-runs its shard alone; running the whole command again resumes every shard
(the pipelines skip what their files already hold). The layout can also come from the
environment: GPUS (ids or "all"), GPUS_PER_WORKER, WORKERS.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vlprm.config import ConfigError
from vlprm.jobs.pipelines import REPO, PIPELINES, Pipeline, get_pipeline, shell_join

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """What one worker runs on: GPU ids (CUDA_VISIBLE_DEVICES) or, without GPUs, CPU cores."""

    gpus: list[str] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The environment that pins a worker to its slot."""
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
        env = {"CUDA_VISIBLE_DEVICES": ""}
        if self.cpus:
            # Without this every vLLM-CPU engine binds its threads to the same cores.
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, self.cpus))
            env["OMP_NUM_THREADS"] = str(len(self.cpus))
        return env

    def describe(self) -> str:
        return f"GPUs {','.join(self.gpus)}" if self.gpus else f"CPU cores {','.join(map(str, self.cpus)) or 'all'}"


def visible_gpus() -> list[str]:
    """GPU ids nvidia-smi lists (none when it is missing or fails)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [x.strip() for x in out.stdout.splitlines() if x.strip()] if out.returncode == 0 else []


def plan_slots(gpus: str | None, gpus_per_worker: int, workers: int | None) -> list[Slot]:
    """The worker layout: GPU groups of gpus_per_worker from `gpus` ("0,1,2,3" or "all"), or
    `workers` CPU workers on disjoint cores when no GPU is given."""
    if gpus_per_worker < 1:
        raise ConfigError(f"GPUS_PER_WORKER must be >= 1, got {gpus_per_worker}")
    ids = visible_gpus() if gpus == "all" else [g.strip() for g in (gpus or "").split(",") if g.strip()]
    if gpus == "all" and not ids:
        raise ConfigError("GPUS=all but nvidia-smi lists no GPU; use WORKERS=N for CPU workers")
    if ids:
        if len(ids) % gpus_per_worker:
            raise ConfigError(f"GPUS={','.join(ids)} ({len(ids)} GPUs) do not split into groups of "
                              f"GPUS_PER_WORKER={gpus_per_worker}")
        if workers and workers != len(ids) // gpus_per_worker:
            raise ConfigError(f"WORKERS={workers} does not match GPUS={','.join(ids)} / "
                              f"GPUS_PER_WORKER={gpus_per_worker}; set one or the other")
        return [Slot(gpus=ids[i:i + gpus_per_worker]) for i in range(0, len(ids), gpus_per_worker)]
    n = workers or 1
    if n < 1:
        raise ConfigError(f"WORKERS must be >= 1, got {n}")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < n:  # more workers than cores: let them share
        return [Slot() for _ in range(n)]
    per = len(cores) // n
    return [Slot(cpus=cores[i * per:(i + 1) * per]) for i in range(n)]


@dataclass
class Worker:
    index: int
    count: int
    slot: Slot
    command: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None

    def rerun_line(self) -> str:
        """The shell line that re-runs this worker's shard alone."""
        env = " ".join(f"{k}={v or repr('')}" for k, v in self.slot.env().items())
        return f"cd {REPO} && {env} {shell_join(self.command)}"


def last_progress(path: Path, width: int = 100) -> str:
    """The last line (or tqdm refresh) of a log, shortened: a worker's progress in one line."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1][-width:] if parts else ""


class WorkerRun:
    """Start the workers, show one line per worker, then merge and print one summary."""

    def __init__(self, pipeline: Pipeline, args: Sequence[str], slots: list[Slot], python: str,
                 status_every: float = 30.0):
        self.pipeline = pipeline
        self.args = list(args)
        self.out = pipeline.output_dir(self.args)
        self.logs = Path(self.out) / "logs"
        self.status_every = status_every
        n = len(slots)
        self.workers = [Worker(i, n, s, pipeline.shard_command(python, self.args, self.out, i, n),
                               self.logs / f"worker-{i}.log") for i, s in enumerate(slots)]
        self.merge = pipeline.merge_command(python, self.args, self.out) if n > 1 else None

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for w in self.workers:
            env = {**os.environ, **w.slot.env()}
            with open(w.log_path, "ab") as logf:
                logf.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shell_join(w.command)}\n".encode())
                logf.flush()
                w.proc = subprocess.Popen(w.command, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
            w.started = time.time()
            print(f"[workers] worker {w.index} (shard {w.index}/{w.count}, {w.slot.describe()}) started; "
                  f"log {w.log_path}", flush=True)

    def wait(self) -> None:
        last_status = time.time()
        running = list(self.workers)
        while running:
            time.sleep(0.5)
            for w in list(running):
                rc = w.proc.poll()
                if rc is None:
                    continue
                w.returncode, w.seconds = rc, time.time() - w.started
                running.remove(w)
                state = "done" if rc == 0 else f"FAILED with exit code {rc}; log {w.log_path}"
                print(f"[workers] worker {w.index} after {w.seconds:.0f} s: {state}", flush=True)
            if running and time.time() - last_status >= self.status_every:
                last_status = time.time()
                for w in running:
                    print(f"[workers] worker {w.index} {time.time() - w.started:5.0f} s | "
                          f"{last_progress(w.log_path)}", flush=True)

    def stop(self) -> None:
        """Stop the workers still running (Ctrl-C, or the scheduler signalling the job)."""
        alive = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for w in alive:
            w.proc.terminate()
        deadline = time.time() + 15
        for w in alive:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()

    def run_merge(self) -> int:
        print(f"[workers] merge: {shell_join(self.merge)}", flush=True)
        path = self.logs / "merge.log"
        with open(path, "ab") as logf:
            proc = subprocess.Popen(self.merge, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            for line in proc.stdout:  # shown and kept: the merge prints the run's tables
                logf.write(line)
                sys.stdout.write(line.decode("utf-8", "replace"))
            return proc.wait()

    def summary(self, merge_rc: int | None, seconds: float) -> str:
        lines = [f"[workers] {self.pipeline.name} summary ({len(self.workers)} worker(s), output {self.out}):"]
        for w in self.workers:
            state = "ok" if w.returncode == 0 else f"failed (exit {w.returncode})"
            lines.append(f"  worker {w.index}  shard {w.index}/{w.count}  {w.slot.describe():<18} {state:<16} "
                         f"{w.seconds:7.1f} s  {w.log_path}")
        failed = [w for w in self.workers if w.returncode != 0]
        for w in failed:
            lines.append(f"  re-run worker {w.index}'s shard alone:\n    {w.rerun_line()}")
        if failed:
            lines.append("  merge not run; run the same command again to resume every shard and merge")
        elif self.merge is not None:
            lines.append(f"  merge {'ok' if merge_rc == 0 else f'failed (exit {merge_rc})'}: "
                         f"{self.logs / 'merge.log'}")
        lines.append(f"  total {seconds:.1f} s")
        return "\n".join(lines)

    def run(self) -> int:
        """Run every worker, then the merge; 0 when all of it succeeded."""
        t0 = time.time()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.start()
            self.wait()
        except KeyboardInterrupt:
            print("[workers] interrupted: stopping the workers", flush=True)
            self.stop()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        ok = all(w.returncode == 0 for w in self.workers)
        merge_rc = self.run_merge() if ok and self.merge is not None else None
        print(self.summary(merge_rc, time.time() - t0), flush=True)
        return 0 if ok and not merge_rc else 1


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vlprm.jobs.workers", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Everything after the options (or after --) goes to the pipeline's command line.")
    p.add_argument("pipeline", choices=sorted(PIPELINES))
    p.add_argument("--gpus", default=os.environ.get("GPUS") or None,
                   help='GPU ids "0,1,2,3" or "all" (env GPUS); none: CPU workers')
    p.add_argument("--gpus-per-worker", type=int, default=int(os.environ.get("GPUS_PER_WORKER") or 1),
                   help="GPUs per worker: 1, 2 for a policy + PRM pair, more for tensor parallel (env GPUS_PER_WORKER)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 0) or None,
                   help="number of workers without GPUs (env WORKERS)")
    p.add_argument("--python", default=sys.executable, help="interpreter the workers run")
    p.add_argument("--status-every", type=float, default=30.0, help="seconds between progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args, unknown = build_parser().parse_known_args(ours)
    try:
        slots = plan_slots(args.gpus, args.gpus_per_worker, args.workers)
        run = WorkerRun(get_pipeline(args.pipeline), unknown + rest, slots, args.python, args.status_every)
    except ConfigError as e:
        print(f"workers: {e}", file=sys.stderr)
        return 2
    try:
        return run.run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
