"""The launcher of PRM training behind `bash train/sft_qwen.sh`: check the arguments, fit them to
the hardware, start the ranks (accelerate + DeepSpeed), and stop them all when it is stopped.

    python -m vlprm.training.launcher [--num_gpus N] [--zero_stage 2|3] [--dry_run] \\
        --config train/configs/prm_default.yaml --dataset D --output_dir O [training flags]

Hyper-parameters come from the YAML recipe, overridden by training flags; the launcher adds only
what the hardware needs. With CUDA: one rank per GPU, the recipe as is. Without: NUM_GPUS CPU
ranks (default 1), fp32, no pinned memory or dataloader workers, the communication backend
DeepSpeed picks for its CPU accelerator (gloo, or ccl with oneCCL), and a DeepSpeed config with
torch's AdamW (DeepSpeed's own Adam needs a C++/CUDA build) and no communication overlap (no
CUDA streams). A mistake in the arguments is one line and exit status 2, before any rank starts.
`--resume_from_checkpoint last` is resolved here, once: the newest complete checkpoint
(`vlprm.training.checkpoints`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from vlprm.config import ConfigError
from vlprm.jobs.pipelines import flag_value

logger = logging.getLogger("vlprm.training.launcher")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "train" / "configs"
ENTRY = REPO / "train" / "sft_qwen.py"
# Shown before a run starts (and by --dry_run): the recipe as the ranks will see it.
SHOWN_SETTINGS = (
    "model_name_or_path", "dataset", "eval_dataset", "output_dir", "num_train_epochs", "max_steps", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "bf16", "gradient_checkpointing",
    "min_pixels", "max_pixels", "max_length", "label_mode", "system_prompt", "use_lora", "freeze_vision",
    "save_steps", "report_to", "resume_from_checkpoint",
)


# Variables the launcher read before the recipe became the one home of defaults; a job that
# still sets one must fail loudly rather than silently train with the recipe's value.
RETIRED_VARIABLES = {
    "LR": "--learning_rate", "EPOCHS": "--num_train_epochs", "WARMUP": "--warmup_steps",
    "WEIGHT_DECAY": "--weight_decay", "ADAM_BETA1": "--adam_beta1", "ADAM_BETA2": "--adam_beta2",
    "MAX_GRAD_NORM": "--max_grad_norm", "BATCH": "--per_device_train_batch_size",
    "GRAD_ACC": "--gradient_accumulation_steps", "MIN_PIXELS": "--min_pixels", "MAX_PIXELS": "--max_pixels",
    "MAX_LENGTH": "--max_length", "GRAD_CKPT": "--gradient_checkpointing", "LABEL_MODE": "--label_mode",
    "SYSTEM_PROMPT": "--system_prompt", "FREEZE_VISION": "--freeze_vision", "USE_LORA": "--use_lora",
    "REPORT_TO": "--report_to", "RUN_NAME": "--run_name", "PRECISION": "--bf16 true|false",
    "NUM_WORKERS": "--dataloader_num_workers", "MAIN_PORT": "--main_port",
}


def check_retired_variables(env: Mapping[str, str]) -> None:
    """ConfigError naming the flag to use for every retired variable set in `env`."""
    found = [f"{name} (use {flag})" for name, flag in RETIRED_VARIABLES.items() if env.get(name)]
    if found:
        raise ConfigError(f"sft_qwen.sh no longer reads {', '.join(found)}: pass recipe keys as flags "
                          "(EXTRA_ARGS or after the script) or edit the recipe (CONFIG)")


def say(msg: str) -> None:
    print(f"[sft_qwen] {msg}", flush=True)


@dataclass
class HardwarePlan:
    """Ranks and what the hardware changes in the recipe (flags that go before the user's own)."""

    processes: int
    cuda: bool
    flags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def plan_hardware(num_gpus: int | None, n_cuda: int, cores: int, comm_backend: str = "gloo") -> HardwarePlan:
    """One rank per GPU (all visible by default); without CUDA, `num_gpus` CPU ranks (default 1)
    splitting the cores, fp32, gloo/ccl, no pinned memory or dataloader worker processes."""
    if n_cuda > 0:
        n = num_gpus or n_cuda
        if n > n_cuda:
            raise ConfigError(f"NUM_GPUS={n} but only {n_cuda} CUDA device(s) are visible")
        return HardwarePlan(n, cuda=True)
    n = num_gpus or 1
    flags = ["--bf16", "false", "--ddp_backend", comm_backend, "--dataloader_pin_memory", "false",
             "--dataloader_num_workers", "0", "--dataloader_persistent_workers", "false"]
    env = {"DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, cores // n)))}
    return HardwarePlan(n, cuda=False, flags=flags, env=env)


def cpu_deepspeed_config(ds: dict, *, bf16: bool) -> dict:
    """A DeepSpeed config made runnable on DeepSpeed's CPU accelerator."""
    ds = json.loads(json.dumps(ds))
    opt = ds.setdefault("optimizer", {"type": "AdamW", "params": {}})
    opt.setdefault("params", {})["torch_adam"] = True
    ds.setdefault("zero_optimization", {})["overlap_comm"] = False
    if not bf16:
        ds["bf16"] = {"enabled": False}
    ds["fp16"] = {"enabled": False}
    return ds


def cpu_comm_backend() -> str:
    """The collective backend DeepSpeed's CPU accelerator uses here (gloo, or ccl with oneCCL)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        from deepspeed.accelerator import get_accelerator

        return get_accelerator().communication_backend_name()
    except Exception:  # noqa: BLE001 - any import/probe failure: the portable backend
        return "gloo"


def without_flag(argv: Sequence[str], name: str) -> list[str]:
    """argv without any `--name V` / `--name=V`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def resolved_settings(cfg, args) -> dict:
    """The SHOWN_SETTINGS of a parsed (PRMTrainConfig, TrainingArguments) pair."""
    out = {}
    for key in SHOWN_SETTINGS:
        value = getattr(cfg, key, getattr(args, key, None))
        out[key] = getattr(value, "value", value)  # enums (lr_scheduler_type) by name
    return out


def accelerate_command(plan: HardwarePlan, opts, ds_config: Path, bf16: bool, port: int,
                       train_argv: Sequence[str]) -> list[str]:
    """`accelerate launch` of train/sft_qwen.py on one node with DeepSpeed."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(opts.accelerate_config),
        "--num_machines", "1", "--num_processes", str(plan.processes), "--main_process_port", str(port),
        "--mixed_precision", "bf16" if bf16 else "no", "--deepspeed_config_file", str(ds_config),
        "--zero3_init_flag", "true" if opts.zero_stage == 3 else "false",
        str(ENTRY), *train_argv,
    ]


def write_cpu_deepspeed_config(source: Path, args, *, write: bool) -> Path:
    """output_dir/ds_config.cpu.json: `source` fitted to DeepSpeed's CPU accelerator."""
    path = Path(args.output_dir) / "ds_config.cpu.json"
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = cpu_deepspeed_config(json.loads(source.read_text()), bf16=args.bf16)
        path.write_text(json.dumps(ds, indent=2) + "\n")
    return path


def show_plan(plan: HardwarePlan, n_cuda: int, deepspeed: str, cfg, args, cmd: Sequence[str]) -> None:
    """Print where the run goes, its resolved settings, its global batch and the command."""
    where = f"{plan.processes} process(es) on {n_cuda} visible GPU(s)" if plan.cuda else \
        f"no CUDA device: {plan.processes} process(es) on CPU x {plan.env['OMP_NUM_THREADS']} thread(s), " \
        f"comm backend {flag_value(plan.flags, '--ddp_backend')}, torch AdamW"
    say(f"{where}; {'bf16' if args.bf16 else 'fp32'}; {deepspeed}")
    say("settings: " + " ".join(f"{k}={v}" for k, v in resolved_settings(cfg, args).items()))
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    say(f"global batch: {args.per_device_train_batch_size} x {args.gradient_accumulation_steps} accumulation "
        f"x {plan.processes} rank(s) = {per_step * plan.processes}")
    say("command: " + " ".join(shlex.quote(c) for c in cmd))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sft_qwen", allow_abbrev=False,
        description="Launch PRM training on this node; every other flag is a training option "
                    "(see python train/sft_qwen.py --help).")
    p.add_argument("--num_gpus", type=int, default=None,
                   help="ranks: GPUs to use (default all visible) or, without CUDA, CPU processes (default 1)")
    p.add_argument("--zero_stage", type=int, choices=(2, 3), default=2, help="DeepSpeed ZeRO stage")
    p.add_argument("--ds_config", type=Path, default=None, help="DeepSpeed config (default train/configs/zeroN.json)")
    p.add_argument("--accelerate_config", type=Path, default=CONFIGS / "accelerate_deepspeed.yaml")
    p.add_argument("--main_port", type=int, default=None, help="rendezvous port (default: a free one)")
    p.add_argument("--dry_run", action="store_true", help="check, print the resolved settings and command, stop")
    return p


def launch(argv: Sequence[str]) -> int:
    """Check the training arguments, then run the ranks (or, with --dry_run, only print)."""
    check_retired_variables(os.environ)
    import torch

    from vlprm.training.checkpoints import resolve_resume
    from vlprm.training.main import parse_args
    from vlprm.training.process_tree import run_supervised

    opts, train_argv = build_parser().parse_known_args(list(argv))
    ds_source = opts.ds_config or CONFIGS / f"zero{opts.zero_stage}.json"
    if not ds_source.is_file():
        raise ConfigError(f"DeepSpeed config {ds_source} not found (ZERO_STAGE={opts.zero_stage})")
    n_cuda = torch.cuda.device_count()
    plan = plan_hardware(opts.num_gpus, n_cuda, os.cpu_count() or 1, "gloo" if n_cuda else cpu_comm_backend())
    os.environ.update(plan.env)
    train_argv = [*plan.flags, *train_argv]  # the user's flags come last and win
    # The ranks parse this very list. Parsing TrainingArguments also sets up a device (and, with
    # an explicit --ddp_backend, a process group): the launcher checks it on CPU without them,
    # so it holds no GPU context and no process group while the ranks run.
    cfg, args = parse_args([*without_flag(train_argv, "--ddp_backend"), "--use_cpu", "true"])
    if not cfg.dataset:
        raise ConfigError("no training data: set DATA (a PRM export dir, JSONL file or hub id) or pass --dataset")
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir, set_aside_torn=not opts.dry_run)
    if args.resume_from_checkpoint:
        train_argv += ["--resume_from_checkpoint", resume or ""]  # "" (nothing to resume yet): from scratch
        args.resume_from_checkpoint = resume

    ds_config = ds_source if plan.cuda else write_cpu_deepspeed_config(ds_source, args, write=not opts.dry_run)
    if opts.main_port is None:
        from vlprm.backends.server import free_port

        opts.main_port = free_port()
    cmd = accelerate_command(plan, opts, ds_config, args.bf16, opts.main_port, train_argv)

    show_plan(plan, n_cuda, f"DeepSpeed ZeRO-{opts.zero_stage} ({ds_config})", cfg, args, cmd)
    if opts.dry_run:
        say("dry run: not started")
        return 0
    return run_supervised(cmd, {**os.environ, **plan.env})


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="[sft_qwen] %(message)s", level=logging.INFO, stream=sys.stdout)
    try:
        return launch(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        print(f"sft_qwen: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
