"""The one job writer for PBS and SLURM: job scripts, array jobs, dependencies, submission.

    python -m vlprm.jobs.cluster evaluation --scheduler slurm --shards 4 [--dry-run] -- --config C
    python -m vlprm.jobs.cluster synthesis --shards 8 -- --config C --out OUT

A sharded run is an array job of SHARDS elements (element i runs `--shard i/SHARDS` of the run
through the pipeline's command line) plus a merge job that starts once every element succeeded
(`afterok`). Training sweeps (`vlprm.jobs.sweep`) use the same writer. Scripts go to OUT/jobs/ and
the schedulers' logs to OUT/logs/. Resources come from flags, else JOB_* environment variables
(JOB_CPUS, JOB_GPUS, JOB_MEM, JOB_WALLTIME, JOB_QUEUE, JOB_ACCOUNT, JOB_EXTRA, JOB_SETUP), else
the defaults below; the scheduler from --scheduler or SCHEDULER (pbs | slurm).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from vlprm.config import ConfigError
from vlprm.jobs.pipelines import PIPELINES, Pipeline, get_pipeline, shell_join

SCHEDULERS = ("pbs", "slurm")
# Environment the jobs need from the submitting shell (PBS passes none of it by default).
PASS_THROUGH = ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_DIR", "HF_HOME", "HF_HUB_OFFLINE",
                "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_CPU_KVCACHE_SPACE")
INDEX = "__VLPRM_ARRAY_INDEX__"  # stands for the array index in a command until it is rendered
# What a job of each kind asks for unless told otherwise (a policy + PRM pair for evaluation).
RESOURCE_DEFAULTS = {"evaluation": {"gpus": 2, "mem": "200gb"}, "synthesis": {},
                     "training": {"cpus": 64, "gpus": 8, "mem": "500gb"}}


@dataclass
class Resources:
    """What one job (or each element of an array) asks for."""

    cpus: int = 16
    gpus: int = 1
    mem: str = "128gb"
    walltime: str = "24:00:00"
    queue: str = ""      # PBS queue / SLURM partition
    account: str = ""    # PBS project (-P) / SLURM account
    extra: str = ""      # more directive lines, written as given ("#PBS ..." / "#SBATCH ...")
    setup: str = ""      # shell lines run first (e.g. "module load cuda")

    @classmethod
    def from_env(cls, environ: dict[str, str], defaults: dict | None = None, **overrides) -> "Resources":
        """The class defaults and `defaults`, then JOB_<NAME> variables, then the non-None overrides."""
        res = cls(**{**(defaults or {}), **{k: v for k, v in overrides.items() if v is not None}})
        for f in fields(cls):
            if overrides.get(f.name) is None and environ.get(f"JOB_{f.name.upper()}"):
                setattr(res, f.name, environ[f"JOB_{f.name.upper()}"])
        try:
            res.cpus, res.gpus = int(res.cpus), int(res.gpus)
        except ValueError as e:
            raise ConfigError(f"JOB_CPUS / JOB_GPUS must be whole numbers ({e})") from None
        if not re.fullmatch(r"\d+:\d\d:\d\d", str(res.walltime)):
            raise ConfigError(f"walltime must be HH:MM:SS, got {res.walltime!r}")
        return res


@dataclass
class Job:
    """One scheduler job: a name, shell lines to run, an optional array of `array` elements."""

    name: str
    body: list[str]
    resources: Resources
    log_dir: Path
    workdir: Path
    array: int = 0                       # number of array elements (0: a plain job)
    env: dict[str, str] = field(default_factory=dict)
    after: list["Job"] = field(default_factory=list)  # jobs that must succeed first (afterok)
    note: str = ""                       # written to the manifest (e.g. the job's output dir)
    job_id: str | None = None


def _slurm_mem(mem: str) -> str:
    """PBS-style "128gb" -> SLURM's "128G"."""
    m = re.fullmatch(r"(\d+)\s*([kmgt])b?", str(mem).strip().lower())
    return f"{m.group(1)}{m.group(2).upper()}" if m else str(mem)


class Scheduler:
    """The dialect of one scheduler: directives, the array index, submission and dependencies."""

    name = ""
    suffix = ""
    index_var = ""

    def directives(self, job: Job) -> list[str]:
        raise NotImplementedError

    def submit_command(self, script: Path, after_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_id(self, output: str) -> str:
        return output.strip().splitlines()[-1].strip() if output.strip() else ""

    def render(self, job: Job) -> str:
        """The job script."""
        lines = ["#!/bin/bash", *self.directives(job)]
        lines += [ln for ln in job.resources.extra.splitlines() if ln.strip()]
        lines += [f"# written by vlprm.jobs.cluster at {time.strftime('%Y-%m-%d %H:%M:%S')}",
                  "set -euo pipefail", f"cd {shlex.quote(str(job.workdir))}"]
        if job.resources.setup:
            lines += job.resources.setup.splitlines()
        lines += [f"export {k}={shlex.quote(str(v))}" for k, v in job.env.items()]
        if job.array:
            lines.append(f"ARRAY_INDEX=${{{self.index_var}:-0}}")
        body = "\n".join(job.body).replace(INDEX, "${ARRAY_INDEX}")
        return "\n".join(lines) + "\n" + body + "\n"


class PBS(Scheduler):
    name, suffix, index_var = "pbs", "pbs", "PBS_ARRAY_INDEX"

    def directives(self, job: Job) -> list[str]:
        r = job.resources
        lines = [f"#PBS -N {job.name}", f"#PBS -l select=1:ncpus={r.cpus}:ngpus={r.gpus}:mem={r.mem}",
                 f"#PBS -l walltime={r.walltime}", "#PBS -j oe", f"#PBS -o {job.log_dir}/"]
        if job.array:
            lines.append(f"#PBS -J 0-{job.array - 1}")
        lines += [f"#PBS -q {r.queue}"] * bool(r.queue) + [f"#PBS -P {r.account}"] * bool(r.account)
        return lines

    def submit_command(self, script: Path, after_ids: Sequence[str]) -> list[str]:
        dep = ["-W", "depend=afterok:" + ":".join(after_ids)] if after_ids else []
        return ["qsub", *dep, str(script)]  # an array's id ("123[].srv") waits for all its elements


class Slurm(Scheduler):
    name, suffix, index_var = "slurm", "sbatch", "SLURM_ARRAY_TASK_ID"

    def directives(self, job: Job) -> list[str]:
        r = job.resources
        log = f"{job.log_dir}/%x-%A_%a.out" if job.array else f"{job.log_dir}/%x-%j.out"
        lines = [f"#SBATCH --job-name={job.name}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
                 f"#SBATCH --cpus-per-task={r.cpus}", f"#SBATCH --mem={_slurm_mem(r.mem)}",
                 f"#SBATCH --time={r.walltime}", f"#SBATCH --output={log}"]
        if r.gpus:
            lines.append(f"#SBATCH --gres=gpu:{r.gpus}")
        if job.array:
            lines.append(f"#SBATCH --array=0-{job.array - 1}")
        lines += [f"#SBATCH --partition={r.queue}"] * bool(r.queue)
        lines += [f"#SBATCH --account={r.account}"] * bool(r.account)
        return lines

    def submit_command(self, script: Path, after_ids: Sequence[str]) -> list[str]:
        dep = ["--dependency=afterok:" + ":".join(after_ids)] if after_ids else []
        return ["sbatch", "--parsable", *dep, str(script)]

    def parse_id(self, output: str) -> str:
        return super().parse_id(output).split(";")[0]  # --parsable prints "id[;cluster]"


def get_scheduler(name: str | None) -> Scheduler:
    """The scheduler called `name` (pbs | slurm)."""
    name = (name or "pbs").lower()
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
    return PBS() if name == "pbs" else Slurm()


def script_path(job: Job, scheduler: Scheduler, jobs_dir: Path) -> Path:
    return jobs_dir / f"{job.name}.{scheduler.suffix}"


def dry_run(jobs: Sequence[Job], scheduler: Scheduler, jobs_dir: Path) -> str:
    """Every job's script and the command that would submit it; nothing is written or sent."""
    out = []
    for job in jobs:
        path = script_path(job, scheduler, jobs_dir)
        deps = [f"<id of {j.name}>" for j in job.after]
        out += [f"==> {path} <==", f"# submit: {shell_join(scheduler.submit_command(path, deps))}",
                scheduler.render(job)]
    return "\n".join(out)


def submit(jobs: Sequence[Job], scheduler: Scheduler, jobs_dir: Path) -> list[Job]:
    """Write and submit the jobs in order (dependencies first); sets each job's id and appends
    "id, name, script, note" to jobs_dir/../jobs.tsv. Raises RuntimeError naming the script when
    the scheduler refuses one."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.log_dir.mkdir(parents=True, exist_ok=True)
        path = script_path(job, scheduler, jobs_dir)
        path.write_text(scheduler.render(job), encoding="utf-8")
        path.chmod(0o755)
        cmd = scheduler.submit_command(path, [j.job_id for j in job.after])
        try:
            res = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise RuntimeError(f"{cmd[0]} not found ({e}); is this a {scheduler.name} login node?") from None
        job.job_id = scheduler.parse_id(res.stdout)
        if res.returncode != 0 or not job.job_id:
            raise RuntimeError(f"{shell_join(cmd)} failed (exit {res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()}; script {path}")
        with open(jobs_dir.parent / "jobs.tsv", "a", encoding="utf-8") as manifest:
            manifest.write(f"{job.job_id}\t{job.name}\t{path}\t{job.note}\n")
        print(f"[cluster] submitted {job.name}: {job.job_id}", flush=True)
    return list(jobs)


def dry_run_or_submit(jobs: Sequence[Job], scheduler: Scheduler, jobs_dir: Path, dry: bool, prog: str) -> int:
    """Print the scripts (dry) or submit them; the exit status of a launcher."""
    if dry:
        print(dry_run(jobs, scheduler, jobs_dir))
        print(f"[{prog}] dry run: {len(jobs)} {scheduler.name} job(s), nothing written or submitted")
        return 0
    try:
        submit(jobs, scheduler, jobs_dir)
    except RuntimeError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(f"[{prog}] {len(jobs)} job(s) submitted; scripts in {jobs_dir}, logs in {jobs[0].log_dir}, "
          f"manifest {jobs_dir.parent / 'jobs.tsv'}")
    return 0


def passed_env(environ: dict[str, str]) -> dict[str, str]:
    """The PASS_THROUGH variables set in the submitting shell."""
    return {k: environ[k] for k in PASS_THROUGH if environ.get(k)}


def sharded_run_jobs(pipeline: Pipeline, args: Sequence[str], shards: int, python: str, resources: Resources,
                     environ: dict[str, str], name: str | None = None,
                     workdir: Path | None = None) -> tuple[list[Job], Path]:
    """An array job of `shards` elements (each `--shard i/shards` of the run) and, for more than
    one shard, the merge job that waits for it; returns (jobs, OUT)."""
    if shards < 1:
        raise ConfigError(f"SHARDS must be >= 1, got {shards}")
    out = pipeline.output_dir(args)
    prefix = name or f"vlprm-{pipeline.name}"
    common = dict(resources=resources, log_dir=Path(out).resolve() / "logs",
                  workdir=(workdir or Path.cwd()).resolve(), env=passed_env(environ))
    if shards == 1:
        return [Job(prefix, [shell_join(pipeline.shard_command(python, args, out, 0, 1))], **common)], Path(out)
    shard = Job(f"{prefix}-shards", [shell_join(pipeline.shard_command(python, args, out, INDEX, shards))],
                array=shards, **common)
    jobs = [shard]
    merge = pipeline.merge_command(python, args, out)
    if merge is not None:
        merge_res = Resources(**{**resources.__dict__, "gpus": 0})  # merges read files only
        jobs.append(Job(f"{prefix}-merge", [shell_join(merge)], **{**common, "resources": merge_res}, after=[shard]))
    return jobs, Path(out)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="python -m vlprm.jobs.cluster", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Everything after the options (or after --) goes to the pipeline's command line. Defaults per "
               f"pipeline: {RESOURCE_DEFAULTS}; merge jobs ask for no GPU.")
    p.add_argument("pipeline", choices=sorted(PIPELINES))
    p.add_argument("--scheduler", default=env.get("SCHEDULER") or "pbs", help="pbs | slurm (env SCHEDULER)")
    p.add_argument("--shards", type=int, default=int(env.get("SHARDS") or 1), help="array elements (env SHARDS)")
    p.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN") == "1",
                   help="print the scripts; write and submit nothing (env DRY_RUN=1)")
    p.add_argument("--name", default=env.get("JOB_NAME"), help="job name prefix (env JOB_NAME)")
    p.add_argument("--python", default=env.get("PYTHON") or sys.executable, help="interpreter the jobs run")
    for f in fields(Resources):
        p.add_argument(f"--{f.name}", default=None, help=f"default {f.default!r} (env JOB_{f.name.upper()})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    a, unknown = build_parser().parse_known_args(ours)
    environ = dict(os.environ)
    try:
        scheduler = get_scheduler(a.scheduler)
        res = Resources.from_env(environ, RESOURCE_DEFAULTS[a.pipeline],
                                 **{f.name: getattr(a, f.name) for f in fields(Resources)})
        jobs, out = sharded_run_jobs(get_pipeline(a.pipeline), unknown + rest, a.shards, a.python, res, environ, a.name)
    except ConfigError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 2
    return dry_run_or_submit(jobs, scheduler, out.resolve() / "jobs", a.dry_run, "cluster")


if __name__ == "__main__":
    sys.exit(main())
