"""The training launcher (train/sft_qwen.sh -> vlprm.training.launcher) and kill-safe checkpoints:
the recipe is the one home of hyper-parameters, a bad flag is one line before any rank starts,
the CPU adjustments, checkpoint completion markers and resume, and stopping the launcher stops
every rank (SIGTERM, and SIGKILL of the launcher mid-save, then RESUME=last with DeepSpeed on CPU)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers_prm_data import write_prm_export

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "train" / "configs" / "prm_default.yaml"
STALL_FAKE = REPO / "tests" / "fakes" / "stall_save"
# Tiny-model flags: 16 samples, 2 of them held out -> 14 train, 2 per rank x 2 ranks: 4 steps an epoch.
TINY_FLAGS = ["--num_train_epochs", "1", "--learning_rate", "2e-3", "--per_device_train_batch_size", "2",
              "--gradient_accumulation_steps", "1", "--min_pixels", str(4 * 28 * 28), "--max_pixels",
              str(16 * 28 * 28), "--system_prompt", "none", "--report_to", "none", "--logging_steps", "1",
              "--disable_tqdm", "true", "--warmup_steps", "0", "--eval_strategy", "no"]


def _run(cmd, env, timeout=300):
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (this test process excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _launcher_env(tiny_model_dir, export, out) -> dict[str, str]:
    return {"MODEL": str(tiny_model_dir), "DATA": str(export), "OUTPUT_DIR": str(out), "NUM_GPUS": "2"}


# --------------------------------------------------------------------------- recipe and arguments


def test_recipe_holds_the_papers_hyper_parameters():
    from vlprm.training.main import parse_args

    cfg, args = parse_args(["--config", str(RECIPE), "--use_cpu", "true"])
    assert (args.num_train_epochs, args.learning_rate, args.warmup_steps, args.weight_decay) == (2, 1e-5, 0.05, 1e-4)
    assert (args.adam_beta1, args.adam_beta2, args.max_grad_norm) == (0.9, 0.95, 1.0)
    assert str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) == "cosine"
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.bf16) == (2, 4, True)
    assert (cfg.min_pixels, cfg.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)


def test_yaml_change_takes_effect_under_the_launcher(tmp_path):
    """A copied recipe with another learning rate: the launcher's resolved settings (parsed as
    the ranks parse them) carry it, and the launcher adds no hyper-parameter flag of its own."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe.update(learning_rate=3.0e-4, num_train_epochs=5, max_pixels=2048 * 28 * 28)
    copy = tmp_path / "recipe.yaml"
    copy.write_text(yaml.safe_dump(recipe))
    r = _run(["bash", "train/sft_qwen.sh", "--seed", "7"],
             {"CONFIG": str(copy), "DATA": str(tmp_path / "data"), "OUTPUT_DIR": str(tmp_path / "out"),
              "NUM_GPUS": "2", "DRY_RUN": "1", "EXTRA_ARGS": "--save_steps 9"})
    assert r.returncode == 0, r.stderr
    settings = next(x for x in r.stdout.splitlines() if x.startswith("[sft_qwen] settings:"))
    values = dict(kv.split("=", 1) for kv in settings.split(": ", 1)[1].split())
    assert float(values["learning_rate"]) == 3e-4 and float(values["num_train_epochs"]) == 5
    assert values["max_pixels"] == str(2048 * 28 * 28) and values["min_pixels"] == str(256 * 28 * 28)
    assert values["seed"] == "7" and values["save_steps"] == "9"  # flags after the recipe win
    assert values["bf16"] == "False"  # no CUDA here: fp32
    command = next(x for x in r.stdout.splitlines() if x.startswith("[sft_qwen] command:"))
    assert f"--config {copy}" in command and "--num_processes 2" in command
    for flag in ("--learning_rate", "--num_train_epochs", "--max_pixels", "--weight_decay"):
        assert flag not in command, flag
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_unknown_flag_is_one_line_and_exit_2_before_any_rank(tmp_path):
    env = {"DATA": str(tmp_path / "data"), "OUTPUT_DIR": str(tmp_path / "out")}
    bad = _run(["bash", "train/sft_qwen.sh", "--learnig_rate", "1e-5"], env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("sft_qwen: unknown training option(s) --learnig_rate")
    assert "Traceback" not in bad.stderr + bad.stdout and "accelerate" not in bad.stdout
    legacy = _run(["bash", "train/sft_qwen.sh"], {**env, "LR": "2e-5"})
    assert legacy.returncode == 2 and "LR (use --learning_rate)" in legacy.stderr


def test_bad_values_and_recipe_keys_are_config_errors(tmp_path):
    from vlprm.config import ConfigError
    from vlprm.training.main import parse_args

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.read_text() + "\nlearnig_rate: 1.0e-5\n")
    with pytest.raises(ConfigError, match="learnig_rate"):
        parse_args(["--config", str(recipe), "--use_cpu", "true"])
    with pytest.raises(ConfigError, match="invalid float value"):
        parse_args(["--learning_rate", "fast", "--use_cpu", "true"])
    with pytest.raises(ConfigError, match="invalid choice"):
        parse_args(["--label_mode", "medium", "--use_cpu", "true"])


def test_hardware_plan_and_cpu_deepspeed_config():
    from vlprm.config import ConfigError
    from vlprm.jobs.pipelines import flag_value
    from vlprm.training.launcher import cpu_deepspeed_config, plan_hardware

    gpu = plan_hardware(None, n_cuda=8, cores=64)
    assert (gpu.processes, gpu.cuda, gpu.flags) == (8, True, [])
    assert plan_hardware(4, n_cuda=8, cores=64).processes == 4
    with pytest.raises(ConfigError, match="only 8 CUDA"):
        plan_hardware(9, n_cuda=8, cores=64)
    cpu = plan_hardware(2, n_cuda=0, cores=8, comm_backend="ccl")
    assert cpu.processes == 2 and not cpu.cuda
    assert flag_value(cpu.flags, "--bf16") == "false" and flag_value(cpu.flags, "--ddp_backend") == "ccl"
    assert flag_value(cpu.flags, "--dataloader_num_workers") == "0"
    assert cpu.env["DS_ACCELERATOR"] == "cpu" and plan_hardware(None, 0, 8).processes == 1

    stock = json.loads((REPO / "train" / "configs" / "zero2.json").read_text())
    fp32 = cpu_deepspeed_config(stock, bf16=False)
    assert fp32["optimizer"]["params"]["torch_adam"] is True
    assert fp32["zero_optimization"]["overlap_comm"] is False and stock["zero_optimization"]["overlap_comm"] is True
    assert fp32["bf16"] == {"enabled": False} and fp32["fp16"] == {"enabled": False}
    assert cpu_deepspeed_config(stock, bf16=True)["bf16"] == stock["bf16"]


# --------------------------------------------------------------------------- checkpoint markers


def _fake_checkpoint(root: Path, step: int, *, complete: bool = True) -> Path:
    from vlprm.training.checkpoints import mark_complete

    ckpt = root / f"checkpoint-{step}"
    (ckpt / f"global_step{step}").mkdir(parents=True)
    (ckpt / f"global_step{step}" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"x" * 100)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        mark_complete(ckpt, step)
    return ckpt


def test_checkpoint_counts_only_when_its_marker_matches_its_files(tmp_path):
    from vlprm.training.checkpoints import why_incomplete

    ok = _fake_checkpoint(tmp_path, 2)
    assert why_incomplete(ok) is None
    unmarked = _fake_checkpoint(tmp_path, 4, complete=False)
    assert "no vlprm_checkpoint.json" in why_incomplete(unmarked)
    shard = ok / "global_step2" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(b"x" * 50)  # truncated after the save
    assert "has 50 bytes, 100" in why_incomplete(ok)
    shard.unlink()
    assert "is missing" in why_incomplete(ok)


def test_resume_last_takes_newest_complete_and_sets_torn_ones_aside(tmp_path, caplog):
    from vlprm.config import ConfigError
    from vlprm.training.checkpoints import resolve_resume

    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 4)
    torn = _fake_checkpoint(tmp_path, 6, complete=False)
    assert resolve_resume("last", tmp_path, set_aside_torn=False) == str(tmp_path / "checkpoint-4")
    assert torn.is_dir()  # only reported without set_aside_torn
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        resolve_resume(str(torn), tmp_path)
    with caplog.at_level(logging.INFO, logger="vlprm.training.checkpoints"):
        assert resolve_resume("last", tmp_path) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-6 is torn" in caplog.text and "resuming from" in caplog.text
    kept = tmp_path / "torn-checkpoint-6"
    assert not torn.exists() and (kept / "trainer_state.json").is_file()  # kept, never deleted
    assert resolve_resume(None, tmp_path) is None and resolve_resume("last", tmp_path / "none") is None


def test_trainer_marks_every_checkpoint_and_rotates_only_complete_ones(tiny_model_dir, tmp_path):
    from vlprm.training.checkpoints import COMPLETE_MARKER, why_incomplete
    from vlprm.training.main import parse_args
    from vlprm.training.run import train_prm

    export = write_prm_export(tmp_path / "prm", n_samples=4)
    out = tmp_path / "out"
    cfg, args = parse_args([
        "--model_name_or_path", str(tiny_model_dir), "--dataset", str(export), "--output_dir", str(out),
        "--min_pixels", str(4 * 28 * 28), "--max_pixels", str(16 * 28 * 28), "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--save_steps", "1", "--save_total_limit", "2", "--report_to", "none",
        "--use_cpu", "true", "--dataloader_num_workers", "0", "--disable_tqdm", "true"])
    train_prm(cfg, args)
    kept = sorted(p.name for p in out.glob("checkpoint-*"))
    assert kept == ["checkpoint-2", "checkpoint-3"]
    for name in kept:
        assert why_incomplete(out / name) is None
        assert json.loads((out / name / COMPLETE_MARKER).read_text())["global_step"] == int(name.split("-")[1])


# --------------------------------------------------------------------------- stopping the process tree

_TREE = textwrap.dedent("""
    import os, subprocess, sys, time
    from vlprm.training.process_tree import die_with_parent, run_supervised
    role, pids = sys.argv[1], sys.argv[2]
    if role == "launcher":  # like sft_qwen's launcher
        sys.exit(run_supervised([sys.executable, __file__, "agent", pids], grace_s=5))
    if role == "agent":  # like torch's elastic agent: its ranks in sessions of their own
        ranks = [subprocess.Popen([sys.executable, __file__, "rank", pids], start_new_session=True) for _ in range(2)]
        for r in ranks:
            r.wait()
    else:
        die_with_parent()  # what every training rank does
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(300)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_launcher_stops_ranks_in_their_own_sessions(tmp_path, sig):
    script, pids = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(_TREE)
    launcher = subprocess.Popen([sys.executable, str(script), "launcher", str(pids)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    _wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 60, "two ranks")
    ranks = [int(p) for p in pids.read_text().split()]
    assert all(_alive(p) for p in ranks)
    launcher.send_signal(sig)
    rc = launcher.wait(timeout=30)
    if sig != signal.SIGKILL:
        assert rc == 128 + sig  # it waited for them: they are gone already
        assert not any(_alive(p) for p in ranks)
    _wait_for(lambda: not any(_alive(p) for p in ranks), 20, "the ranks to stop")


# --------------------------------------------------------------------------- DeepSpeed on CPU


@pytest.mark.slow
def test_kill_9_mid_checkpoint_save_then_resume_from_previous_complete(tiny_model_dir, tmp_path):
    """The launcher is SIGKILLed while rank 1 is writing checkpoint-4's optimizer shard (held
    there by a fake): no rank survives it, checkpoint-4 is torn, and RESUME=last resumes from
    checkpoint-2, says so, and keeps the torn one as torn-checkpoint-4."""
    export = write_prm_export(tmp_path / "prm", n_samples=16, seed=1)
    out, flag, log = tmp_path / "run", tmp_path / "stalled", tmp_path / "first.log"
    env = {**os.environ, **_launcher_env(tiny_model_dir, export, out), "PYTHONPATH": str(STALL_FAKE),
           "VLPRM_TEST_STALL_SAVE": "global_step4/zero_pp_rank_1", "VLPRM_TEST_STALL_FLAG": str(flag)}
    with open(log, "w") as f:
        first = subprocess.Popen(["bash", "train/sft_qwen.sh", *TINY_FLAGS, "--save_steps", "2"], cwd=REPO, env=env,
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: flag.exists() or first.poll() is not None, 500, "the save of checkpoint-4")
        assert flag.exists(), log.read_text()[-3000:]
    finally:
        first.kill()  # SIGKILL: what a walltime leaves no time to handle
        first.wait()
    _wait_for(lambda: not _pids_with(str(out)), 60, "every training process to stop")
    torn = out / "checkpoint-4"
    assert (out / "checkpoint-2" / "vlprm_checkpoint.json").is_file()
    assert (torn / "global_step4").is_dir() and not (torn / "vlprm_checkpoint.json").exists()
    assert not (torn / "trainer_state.json").exists()  # what the old resume tripped over

    second = _run(["bash", "train/sft_qwen.sh", *TINY_FLAGS, "--save_steps", "2"],
                  {**_launcher_env(tiny_model_dir, export, out), "RESUME": "last"}, timeout=600)
    assert second.returncode == 0, (second.stdout[-3000:], second.stderr[-3000:])
    said = second.stdout + second.stderr
    assert f"checkpoint {torn} is torn" in said and f"resuming from {out / 'checkpoint-2'}" in said
    assert (out / "torn-checkpoint-4" / "global_step4").is_dir()  # kept for inspection
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from"] == str(out / "checkpoint-2") and summary["global_step"] == 4
    assert [s for s, _ in summary["loss_curve"]] == [1, 2, 3, 4]
    assert (out / "checkpoint-4" / "vlprm_checkpoint.json").is_file()  # saved again, completely


@pytest.mark.slow
def test_sigterm_to_the_launcher_leaves_no_training_process(tiny_model_dir, tmp_path):
    export = write_prm_export(tmp_path / "prm", n_samples=16, seed=1)
    out, log = tmp_path / "run", tmp_path / "train.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(["bash", "train/sft_qwen.sh", *TINY_FLAGS, "--num_train_epochs", "500",
                                 "--save_strategy", "no"], cwd=REPO, env={**os.environ, **_launcher_env(
                                     tiny_model_dir, export, out)}, stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "'loss'" in log.read_text() or proc.poll() is not None, 500, "training to start")
        assert proc.poll() is None, log.read_text()[-3000:]
        assert len(_pids_with(str(out))) >= 4  # launcher, agent, 2 ranks
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not _pids_with(str(out)), "training processes outlived the launcher"
    assert "SIGTERM: stopping all training processes" in log.read_text()
