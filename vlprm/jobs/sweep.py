"""Training sweeps on PBS or SLURM: one job per combination of swept values, each running
`train/sft_qwen.sh`. `train/launch.sh` runs this module.

A swept or fixed key is either a recipe key (lower case: any `train/sft_qwen.py` flag, e.g.
`learning_rate`, passed to the job as `--learning_rate V` after the recipe, so it wins) or a
launcher variable (upper case: MODEL, DATA, NUM_GPUS, ZERO_STAGE, ... exported for sft_qwen.sh).
Values come from `SWEEP_<key>` environment variables (space-separated) and/or a sweep YAML::

    name: lr-epochs                # job name prefix (optional)
    sweep:                         # every combination is one job
      learning_rate: ["1e-5", "2e-5"]
      num_train_epochs: [1, 2]
    env:                           # fixed for every job (recipe keys or launcher variables)
      MODEL: Qwen/Qwen2.5-VL-3B-Instruct
      DATA: data/prm_export
    resources:                     # cpus, gpus, mem, walltime, queue, account, extra, setup
      walltime: "12:00:00"

Each job runs with RESUME=last (a requeued job resumes), is named run_name=<job name> and writes
to SWEEP_ROOT/<job name>.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import sys
import time
from dataclasses import fields
from pathlib import Path

from vlprm.config import ConfigError
from vlprm.jobs.cluster import RESOURCE_DEFAULTS, Job, Resources, dry_run_or_submit, get_scheduler, passed_env
from vlprm.jobs.pipelines import REPO

SFT_SH = REPO / "train" / "sft_qwen.sh"
# Launcher variables a sweep never forwards: they name the scheduler / the sweep, not the training.
NOT_FORWARDED = {"SCHEDULER", "PYTHON", "DRY_RUN", "OMP_NUM_THREADS", "N_CUDA", "COMM", "DS_ACCELERATOR"}
SHORT = {"learning_rate": "lr", "num_train_epochs": "ep", "per_device_train_batch_size": "bs",
         "gradient_accumulation_steps": "ga", "ZERO_STAGE": "z", "seed": "seed", "warmup_ratio": "wu",
         "weight_decay": "wd", "MODEL": "", "label_mode": "", "use_lora": "lora"}


def launcher_variables() -> set[str]:
    """The environment variables train/sft_qwen.sh reads (from the script itself, so they stay in step)."""
    text = SFT_SH.read_text(encoding="utf-8")
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-+=}])", text)) - NOT_FORWARDED


def recipe_keys() -> set[str] | None:
    """Every flag train/sft_qwen.py takes: PRMTrainConfig's fields and TrainingArguments' (read from
    its source, as importing transformers takes seconds); None when transformers is not installed."""
    import ast
    import importlib.util

    from vlprm.training.config import PRMTrainConfig

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "training_args.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    names = {node.target.id for cls in tree.body if isinstance(cls, ast.ClassDef) and cls.name == "TrainingArguments"
             for node in cls.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    return (names or None) and names | {f.name for f in fields(PRMTrainConfig)}


def _str(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def load_sweep(path: str | None, environ: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, str], dict]:
    """(swept key -> values, fixed keys, resource settings) from a sweep YAML and SWEEP_* variables."""
    sweep: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    res: dict = {}
    if path:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict) or set(data) - {"name", "sweep", "env", "resources"}:
            raise ConfigError(f"{path}: a sweep file is a mapping with name:, sweep:, env: and resources: keys")
        for k, vals in (data.get("sweep") or {}).items():
            sweep[str(k)] = [_str(v) for v in (vals if isinstance(vals, list) else [vals])]
        fixed = {str(k): _str(v) for k, v in (data.get("env") or {}).items()}
        res = {str(k).lower(): _str(v) for k, v in (data.get("resources") or {}).items()}
        if data.get("name"):
            res["name"] = _str(data["name"])
    for key in sorted(environ):
        if key.startswith("SWEEP_") and key != "SWEEP_ROOT" and environ[key].strip():
            sweep[key[len("SWEEP_"):]] = environ[key].split()
    variables, recipe = launcher_variables(), recipe_keys()
    for k in list(sweep) + list(fixed):
        known = k in variables if k.isupper() else (recipe is None or k in recipe)
        if not known:
            kind = "train/sft_qwen.sh variable" if k.isupper() else "train/sft_qwen.py flag (recipe key)"
            choices = f"; known: {', '.join(sorted(variables))}" if k.isupper() else ""
            raise ConfigError(f"unknown {kind} {k}{choices}")
    bad_res = set(res) - {f.name for f in fields(Resources)} - {"name"}
    if bad_res:
        raise ConfigError(f"{path}: unknown resources key(s) {', '.join(sorted(bad_res))}")
    return sweep, fixed, res


def points(sweep: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the swept values (one empty point when nothing is swept)."""
    names = list(sweep)
    return [dict(zip(names, combo)) for combo in itertools.product(*(sweep[n] for n in names))]


def job_name(prefix: str, index: int, point: dict[str, str]) -> str:
    parts = [f"{SHORT.get(k, k.lower())}{Path(v).name if k in ('MODEL', 'DATA') else v}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join([prefix, f"{index:02d}", *parts]))


def job_body(settings: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(exported launcher variables, shell lines) of one training job: recipe keys become
    sft_qwen.sh arguments, which come after the recipe and EXTRA_ARGS, so they win."""
    env = {k: v for k, v in settings.items() if k.isupper()}
    flags = [f"--{k} {shlex.quote(v)}" for k, v in settings.items() if not k.isupper()]
    return env, [" ".join([f"bash {shlex.quote(str(SFT_SH))}", *flags])]


def build_jobs(sweep_file: str | None, environ: dict[str, str], root: str | None = None,
               scheduler: str | None = None) -> tuple[list[Job], Path]:
    """One job per sweep point; returns (jobs, sweep root)."""
    sweep, fixed, res_cfg = load_sweep(sweep_file, environ)
    prefix = res_cfg.pop("name", None) or environ.get("JOB_NAME") or "vlprm-prm"
    resources = Resources.from_env(environ, RESOURCE_DEFAULTS["training"])
    for k, v in res_cfg.items():  # the sweep file's resources win over JOB_* variables
        setattr(resources, k, int(v) if k in ("cpus", "gpus") else v)
    # sft_qwen.sh variables set in the launching shell travel with every job; the file's win.
    variables = launcher_variables()
    launch_env = {k: environ[k] for k in sorted(variables) if environ.get(k)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root_dir = Path(root or environ.get("SWEEP_ROOT") or f"outputs/sweeps/{prefix}-{stamp}").resolve()
    jobs = []
    for i, point in enumerate(points(sweep)):
        name = job_name(prefix, i, point)
        settings = {**launch_env, **fixed, **point}
        settings.setdefault("NUM_GPUS", str(resources.gpus))
        out = f"{settings['OUTPUT_DIR']}/{name}" if settings.get("OUTPUT_DIR") else str(root_dir / name)
        settings["OUTPUT_DIR"] = out
        settings.setdefault("run_name", name)
        settings.setdefault("RESUME", "last")
        env, body = job_body(settings)
        desc = " ".join(f"{k}={v}" for k, v in point.items()) or "(nothing swept)"
        body = [f'echo "[$(date)] sweep point:" {shlex.quote(desc)}', *body]
        jobs.append(Job(name, body, resources, root_dir / "logs", Path.cwd().resolve(),
                        env={**passed_env(environ), **env}, note=out))
    return jobs, root_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="train/launch.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Resources: JOB_CPUS, JOB_GPUS, JOB_MEM, JOB_WALLTIME, JOB_QUEUE, JOB_ACCOUNT, "
                                       "JOB_EXTRA, JOB_SETUP, JOB_NAME. SWEEP_ROOT: where scripts, logs and outputs "
                                       "go.")
    p.add_argument("--sweep", help="sweep YAML (sweep:, env:, resources:)")
    p.add_argument("--scheduler", default=os.environ.get("SCHEDULER") or "pbs", help="pbs | slurm (env SCHEDULER)")
    p.add_argument("--dry-run", action="store_true", help="print the job scripts; write and submit nothing")
    p.add_argument("--root", help="sweep root (default: $SWEEP_ROOT or outputs/sweeps/<name>-<time>)")
    args = p.parse_args(argv)
    try:
        scheduler = get_scheduler(args.scheduler)
        jobs, root = build_jobs(args.sweep, dict(os.environ), args.root)
    except (ConfigError, OSError) as e:
        print(f"launch.sh: {e}", file=sys.stderr)
        return 2
    return dry_run_or_submit(jobs, scheduler, root / "jobs", args.dry_run, "launch.sh")


if __name__ == "__main__":
    sys.exit(main())
