"""PBS sweeps of PRM training: one job per combination of swept `train/sft_qwen.sh` variables.

`train/launch.sh` runs this module. Swept values come from `SWEEP_<NAME>` environment variables
(space-separated) and/or a sweep YAML::

    name: lr-epochs            # job name prefix (optional)
    sweep:                     # sft_qwen.sh variable -> values; every combination is one job
      LR: ["1e-5", "2e-5"]
      EPOCHS: [1, 2]
    env:                       # fixed sft_qwen.sh variables for every job
      MODEL: Qwen/Qwen2.5-VL-3B-Instruct
      DATA: data/prm_export
    pbs:                       # PBS settings (same names as the PBS_* variables, lower case)
      walltime: "12:00:00"

Each job script requests `select=..:ncpus=..:ngpus=..:mem=..` and a walltime, names the job, sends
stdout/stderr to the sweep's logs/ dir, sets the sweep point and the launch-time sft_qwen.sh
variables, and calls `train/sft_qwen.sh` with RESUME=last (a requeued job resumes). Without
--dry-run the scripts are written under the sweep root and submitted with `qsub` (QSUB); with
--dry-run they are only printed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The variables train/sft_qwen.sh reads (a sweep may vary any of them).
SFT_VARS = (
    "MODEL", "DATA", "EVAL_DATA", "CONFIG", "OUTPUT_DIR", "RUN_NAME", "ZERO_STAGE", "DS_CONFIG",
    "ACCELERATE_CONFIG", "NUM_GPUS", "EPOCHS", "LR", "SCHEDULER", "WARMUP", "WEIGHT_DECAY", "ADAM_BETA1",
    "ADAM_BETA2", "MAX_GRAD_NORM", "BATCH", "GRAD_ACC", "SEED", "MIN_PIXELS", "MAX_PIXELS", "MAX_LENGTH",
    "GRAD_CKPT", "LABEL_MODE", "SYSTEM_PROMPT", "FREEZE_VISION", "USE_LORA", "REPORT_TO", "RESUME",
    "PRECISION", "NUM_WORKERS", "MAIN_PORT", "EXTRA_ARGS", "PYTHON",
)
# Environment the jobs inherit from the launching shell when set there (PBS does not pass it).
PASS_THROUGH = ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_DIR", "HF_HOME", "HF_HUB_OFFLINE",
                "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PBS_DEFAULTS = {
    "queue": "", "project": "", "select": "1", "ncpus": "64", "ngpus": "8", "mem": "500gb",
    "walltime": "24:00:00", "name": "vlprm-prm", "extra": "", "setup": "",
}
SHORT = {"LR": "lr", "EPOCHS": "ep", "BATCH": "bs", "GRAD_ACC": "ga", "ZERO_STAGE": "z", "LABEL_MODE": "",
         "SEED": "seed", "WARMUP": "wu", "WEIGHT_DECAY": "wd", "MODEL": "", "USE_LORA": "lora"}


@dataclass
class Job:
    name: str
    point: dict[str, str]
    script: str
    output_dir: str


def _str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def load_sweep(path: str | None, environ: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, str], dict]:
    """(swept variable -> values, fixed variables, pbs settings) from a YAML file and SWEEP_* vars."""
    sweep: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    pbs: dict = {}
    if path:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a sweep file is a mapping with sweep:, env: and pbs: keys")
        for k, vals in (data.get("sweep") or {}).items():
            sweep[str(k)] = [_str(v) for v in (vals if isinstance(vals, list) else [vals])]
        fixed = {str(k): _str(v) for k, v in (data.get("env") or {}).items()}
        pbs = {str(k).lower(): _str(v) for k, v in (data.get("pbs") or {}).items()}
        if data.get("name"):
            pbs.setdefault("name", _str(data["name"]))
    for key in sorted(environ):
        if key.startswith("SWEEP_") and key not in ("SWEEP_ROOT",) and environ[key].strip():
            sweep[key[len("SWEEP_"):]] = environ[key].split()
    unknown = [k for k in list(sweep) + list(fixed) if k not in SFT_VARS]
    if unknown:
        raise ValueError(f"unknown sft_qwen.sh variable(s) {', '.join(unknown)}; known: {', '.join(SFT_VARS)}")
    for k, vals in sweep.items():
        if not vals:
            raise ValueError(f"sweep variable {k} has no values")
    return sweep, fixed, pbs


def points(sweep: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the swept values (one empty point when nothing is swept)."""
    names = list(sweep)
    return [dict(zip(names, combo)) for combo in itertools.product(*(sweep[n] for n in names))]


def job_name(prefix: str, index: int, point: dict[str, str]) -> str:
    parts = [f"{SHORT.get(k, k.lower())}{Path(v).name if k in ('MODEL', 'DATA') else v}" for k, v in point.items()]
    name = "-".join([prefix, f"{index:02d}", *parts])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def render_job(*, name: str, point: dict[str, str], fixed: dict[str, str], pbs: dict, root: Path,
               workdir: Path) -> Job:
    """The PBS script of one sweep point."""
    logs = root / "logs"
    out_dir = root / name
    lines = [
        "#!/bin/bash",
        f"#PBS -N {name}",
        f"#PBS -l select={pbs['select']}:ncpus={pbs['ncpus']}:ngpus={pbs['ngpus']}:mem={pbs['mem']}",
        f"#PBS -l walltime={pbs['walltime']}",
        f"#PBS -o {logs / (name + '.out')}",
        f"#PBS -e {logs / (name + '.err')}",
    ]
    if pbs.get("queue"):
        lines.append(f"#PBS -q {pbs['queue']}")
    if pbs.get("project"):
        lines.append(f"#PBS -P {pbs['project']}")
    lines += [ln if ln.startswith("#PBS") else f"#PBS {ln}" for ln in pbs.get("extra", "").splitlines() if ln.strip()]
    point_desc = " ".join(f"{k}={v}" for k, v in point.items()) or "(no swept variables)"
    lines += [
        f"# generated by train/launch.sh at {time.strftime('%Y-%m-%d %H:%M:%S')}; sweep point: {point_desc}",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
    ]
    if pbs.get("setup"):
        lines += ["# setup (PBS_SETUP)", *pbs["setup"].splitlines()]
    env = dict(fixed)
    env.update(point)
    env.setdefault("NUM_GPUS", str(pbs["ngpus"]))
    env["OUTPUT_DIR"] = env.get("OUTPUT_DIR") and f"{env['OUTPUT_DIR']}/{name}" or str(out_dir)
    env["RUN_NAME"] = point.get("RUN_NAME", name)
    env.setdefault("RESUME", "last")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines += [
        'echo "[$(date)] job ${PBS_JOBID:-?} on $(hostname): ' + point_desc.replace('"', "'") + '"',
        f"bash {shlex.quote(str(REPO / 'train' / 'sft_qwen.sh'))}",
        "",
    ]
    return Job(name=name, point=point, script="\n".join(lines), output_dir=env["OUTPUT_DIR"])


def build_jobs(sweep_file: str | None, environ: dict[str, str], root: str | None = None,
               workdir: str | None = None) -> tuple[list[Job], Path]:
    sweep, fixed, pbs_cfg = load_sweep(sweep_file, environ)
    pbs = dict(PBS_DEFAULTS)
    for k in PBS_DEFAULTS:
        if environ.get(f"PBS_{k.upper()}"):
            pbs[k] = environ[f"PBS_{k.upper()}"]
    pbs.update({k: v for k, v in pbs_cfg.items() if k in PBS_DEFAULTS})
    # Variables set in the launching shell travel with the job; the sweep file's env wins.
    launch_env = {k: environ[k] for k in SFT_VARS + PASS_THROUGH if environ.get(k)}
    fixed = {**launch_env, **fixed}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root_dir = Path(root or environ.get("SWEEP_ROOT") or f"outputs/sweeps/{pbs['name']}-{stamp}").resolve()
    wd = Path(workdir or os.getcwd()).resolve()
    jobs = [render_job(name=job_name(pbs["name"], i, p), point=p, fixed=fixed, pbs=pbs, root=root_dir, workdir=wd)
            for i, p in enumerate(points(sweep))]
    return jobs, root_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="train/launch.sh", description="Submit a PBS sweep of PRM trainings.",
                                epilog="Swept variables: SWEEP_<NAME>='v1 v2' for any sft_qwen.sh variable "
                                       "(LR, EPOCHS, BATCH, ...). PBS: PBS_QUEUE, PBS_PROJECT, PBS_SELECT, "
                                       "PBS_NCPUS, PBS_NGPUS, PBS_MEM, PBS_WALLTIME, PBS_NAME, PBS_EXTRA, "
                                       "PBS_SETUP. SWEEP_ROOT: where job scripts, logs and outputs go. "
                                       "QSUB: the submit command.")
    p.add_argument("--sweep", help="sweep YAML (sweep:, env:, pbs: mappings)")
    p.add_argument("--dry-run", action="store_true", help="print the job scripts; write and submit nothing")
    p.add_argument("--root", help="sweep root dir (default: $SWEEP_ROOT or outputs/sweeps/<name>-<time>)")
    args = p.parse_args(argv)

    try:
        jobs, root = build_jobs(args.sweep, dict(os.environ), args.root)
    except (ValueError, OSError) as e:
        print(f"launch.sh: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for job in jobs:
            print(f"==> {root / 'jobs' / (job.name + '.pbs')} <==")
            print(job.script)
        print(f"[launch.sh] dry run: {len(jobs)} job(s), nothing submitted")
        return 0

    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    qsub = shlex.split(os.environ.get("QSUB", "qsub"))
    failures = 0
    with open(root / "jobs.tsv", "a", encoding="utf-8") as manifest:
        for job in jobs:
            path = root / "jobs" / f"{job.name}.pbs"
            path.write_text(job.script)
            path.chmod(0o755)
            try:
                res = subprocess.run([*qsub, str(path)], capture_output=True, text=True)
                ok, out = res.returncode == 0, (res.stdout.strip() or res.stderr.strip())
            except OSError as e:
                ok, out = False, str(e)
            if ok:
                print(f"[launch.sh] submitted {job.name}: {out}")
                desc = " ".join(f"{k}={v}" for k, v in job.point.items())
                manifest.write(f"{out}\t{job.name}\t{desc}\t{path}\t{job.output_dir}\n")
            else:
                failures += 1
                print(f"[launch.sh] qsub failed for {job.name} ({path}): {out}", file=sys.stderr)
    print(f"[launch.sh] {len(jobs) - failures} of {len(jobs)} job(s) submitted; scripts in {root / 'jobs'}, "
          f"logs in {root / 'logs'}, manifest {root / 'jobs.tsv'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
