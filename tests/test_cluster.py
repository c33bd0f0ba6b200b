"""The one job writer (vlprm.jobs.cluster, vlprm.jobs.sweep): PBS and SLURM dry runs of the three
launchers, resources from the environment and flags, and qsub / sbatch stand-ins (tests/standins/)
that record what they are sent and run the job bodies: array elements with their index, the merge
only after every element succeeded, and the merged result equal to the unsharded run (sharded
evaluation equals unsharded through the same commands in tests/test_workers.py)."""

import json
import os
from pathlib import Path

import pytest

from helpers_runs import REPO, SYNTH_CONFIG, export_rows, reference_synthesis, run_launcher, synthesis_args
from vlprm.config import ConfigError
from vlprm.jobs.cluster import Resources, main as cluster_main

STANDINS = REPO / "tests" / "standins"


def standin_env(tmp_path: Path, **extra) -> dict[str, str]:
    """PATH with the qsub / sbatch stand-ins first; what they were sent goes to calls.jsonl."""
    for tool in ("qsub", "sbatch"):
        (STANDINS / tool).chmod(0o755)
    return {"PATH": f"{STANDINS}:{os.environ['PATH']}", "STANDIN_LOG": str(tmp_path / "calls.jsonl"), **extra}


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]


def job_output(tmp_path: Path, call: dict, index: int = 0) -> str:
    return (tmp_path / f"calls.jsonl.{call['id']}.{index}.out").read_text()


def test_dry_runs_print_each_schedulers_array_and_dependency_syntax(tmp_path):
    cfg = tmp_path / "e.yaml"
    cfg.write_text("benchmarks:\n  - {name: mmmu, path: x}\noutput_root: " + str(tmp_path / "eval") + "\n")
    base = {"CONFIG": str(cfg), "SHARDS": "4", "DRY_RUN": "1", "JOB_QUEUE": "gpu", "EXTRA": "--policy.n 16"}
    pbs = run_launcher("eval/launch_eval.sh", {**base, "SCHEDULER": "pbs"}, timeout=120)
    assert pbs.returncode == 0, pbs.stderr
    text = pbs.stdout
    assert text.count("#!/bin/bash") == 2 and "#PBS -J 0-3" in text and "#PBS -q gpu" in text
    assert "ARRAY_INDEX=${PBS_ARRAY_INDEX:-0}" in text and "--shard ${ARRAY_INDEX}/4" in text
    assert "--policy.n 16" in text and "--stages sample,score,search" in text and "--stages metrics" in text
    assert "select=1:ncpus=16:ngpus=2:mem=200gb" in text  # evaluation: a policy + PRM pair
    assert "depend=afterok:<id of vlprm-evaluation-shards>" in text and "#SBATCH" not in text
    assert not (tmp_path / "eval").exists()  # a dry run writes nothing

    slurm = run_launcher("eval/launch_eval.sh", {**base, "SCHEDULER": "slurm", "JOB_MEM": "64gb"}, timeout=120)
    text = slurm.stdout
    assert slurm.returncode == 0 and "#PBS" not in text
    for line in ("#SBATCH --array=0-3", "#SBATCH --partition=gpu", "#SBATCH --mem=64G", "#SBATCH --gres=gpu:2",
                 "ARRAY_INDEX=${SLURM_ARRAY_TASK_ID:-0}", "--dependency=afterok:<id of vlprm-evaluation-shards>"):
        assert line in text, line

    syn = run_launcher("rollout_data_generation/run.sh", {"SCHEDULER": "slurm", "SHARDS": "4", "DRY_RUN": "1",
                                                          "OUT": str(tmp_path / "syn")}, timeout=120)
    assert syn.returncode == 0, syn.stderr
    assert "#SBATCH --array=0-3" in syn.stdout and "merge_shards.py --run " + str(tmp_path / "syn") in syn.stdout
    assert not (tmp_path / "syn").exists()

    sweep = run_launcher("train/launch.sh", {"SCHEDULER": "slurm", "SWEEP_learning_rate": "1e-5 2e-5", "DATA": "d",
                                             "SWEEP_ROOT": str(tmp_path / "sw")}, "--dry-run", timeout=120)
    assert sweep.returncode == 0, sweep.stderr
    assert sweep.stdout.count("#SBATCH --job-name=vlprm-prm-0") == 2 and "#SBATCH --gres=gpu:8" in sweep.stdout
    assert "train/sft_qwen.sh --learning_rate 2e-5 --run_name vlprm-prm-01-lr2e-5" in sweep.stdout
    assert "export DATA=d" in sweep.stdout
    assert not (tmp_path / "sw").exists()
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("name: ysweep\nsweep:\n  per_device_train_batch_size: [1, 2, 4]\nenv:\n  DATA: d\n"
                          "resources:\n  walltime: '02:00:00'\n")
    y = run_launcher("train/launch.sh", {"SWEEP_ROOT": str(tmp_path / "y")}, "--sweep", str(sweep_file), "--dry-run")
    assert y.returncode == 0 and y.stdout.count("#PBS -l walltime=02:00:00") == 3, y.stderr
    assert "#PBS -N ysweep-02-bs4" in y.stdout and "--per_device_train_batch_size 4" in y.stdout
    sweep_file.write_text("sweep:\n  learning_rate: [1]\npbs:\n  walltime: '02:00:00'\n")
    bad = run_launcher("train/launch.sh", {}, "--sweep", str(sweep_file), "--dry-run")
    assert bad.returncode == 2 and "resources:" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_resources_come_from_defaults_then_env_then_flags():
    res = Resources.from_env({"JOB_CPUS": "8", "JOB_WALLTIME": "01:00:00"}, {"gpus": 2}, cpus=None, mem="1gb")
    assert (res.cpus, res.gpus, res.mem, res.walltime) == (8, 2, "1gb", "01:00:00")
    with pytest.raises(ConfigError, match="HH:MM:SS"):
        Resources.from_env({"JOB_WALLTIME": "1h"})
    with pytest.raises(ConfigError, match="whole numbers"):
        Resources.from_env({"JOB_GPUS": "two"})
    assert cluster_main(["synthesis", "--scheduler", "lsf", "--dry-run", "--", "--out", "x"]) == 2


@pytest.mark.slow
def test_training_sweep_on_the_pbs_standin_runs_sft_qwen_with_each_point(tiny_model_dir, tmp_path):
    from helpers_prm_data import write_prm_export

    # One point (each job body starts the training launcher; the dry-run test covers combinations).
    env = standin_env(tmp_path, SWEEP_learning_rate="2e-5", SWEEP_num_train_epochs="3",
                      DATA=str(write_prm_export(tmp_path / "data", n_samples=2)), MODEL=str(tiny_model_dir),
                      JOB_QUEUE="gpuq", JOB_ACCOUNT="proj42",
                      JOB_CPUS="8", JOB_GPUS="2", JOB_MEM="64gb", JOB_WALLTIME="01:00:00", JOB_NAME="prmtest",
                      SWEEP_ROOT=str(tmp_path / "sweep"), DRY_RUN="1")  # DRY_RUN: sft_qwen.sh prints its command
    res = run_launcher("train/launch.sh", env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    sent = calls(tmp_path)
    assert len(sent) == 1 and all(c["tool"] == "qsub" and c["ran"] == [0] for c in sent)
    points = set()
    for c in sent:
        script = c["script"]
        for line in ("#PBS -q gpuq", "#PBS -P proj42", "#PBS -l select=1:ncpus=8:ngpus=2:mem=64gb",
                     "#PBS -l walltime=01:00:00", "#PBS -N prmtest-", f"export MODEL={tiny_model_dir}",
                     "export NUM_GPUS=2", "export RESUME=last", "train/sft_qwen.sh"):
            assert line in script, (line, script)
        printed = job_output(tmp_path, c)  # what sft_qwen.sh would run
        lr = printed.split("--learning_rate ")[-1].split()[0]
        ep = printed.split("--num_train_epochs ")[-1].split()[0]
        points.add((lr, ep))
    assert points == {("2e-5", "3")}
    manifest = (tmp_path / "sweep" / "jobs.tsv").read_text().splitlines()
    assert [m.split("\t")[0] for m in manifest] == [c["id"] for c in sent]
    bad = run_launcher("train/launch.sh", {"SWEEP_learning_ratee": "1", "SWEEP_ROOT": str(tmp_path / "b")}, timeout=120)
    assert bad.returncode == 2 and "learning_ratee" in bad.stderr


def test_a_failed_array_element_keeps_the_merge_from_running(tmp_path):
    """afterok: the merge job is submitted with the array's id and never runs when an element failed."""
    env = standin_env(tmp_path, SCHEDULER="pbs", SHARDS="2", OUT=str(tmp_path / "run"),
                      CONFIG="rollout_data_generation/configs/tiny.yaml", EXTRA="--mc.method no-such-method")
    res = run_launcher("rollout_data_generation/run.sh", env, timeout=300)
    assert res.returncode == 0, res.stderr  # submission succeeded; the jobs failed on the "cluster"
    shards, merge = calls(tmp_path)
    assert shards["id"].endswith("[].pbs01") and "#PBS -J 0-1" in shards["script"]
    assert merge["args"][:2] == ["-W", f"depend=afterok:{shards['id']}"] and merge["after"] == [shards["id"]]
    assert len(shards["ran"]) == 2 and all(rc != 0 for rc in shards["ran"]) and merge["ran"] == []
    assert "no-such-method" in job_output(tmp_path, shards, 1)


@pytest.mark.slow
def test_synthesis_array_on_the_slurm_standin_merges_to_the_unsharded_export(tiny_model_dir, tmp_path):
    ref = reference_synthesis(tiny_model_dir)
    out = tmp_path / "run"
    env = standin_env(tmp_path, SCHEDULER="slurm", SHARDS="2", OUT=str(out), JOB_GPUS="0", CONFIG=SYNTH_CONFIG,
                      EXTRA=" ".join(synthesis_args(tiny_model_dir)))
    res = run_launcher("rollout_data_generation/run.sh", env)
    assert res.returncode == 0, res.stdout + res.stderr
    shards, merge = calls(tmp_path)
    assert shards["tool"] == "sbatch" and "#SBATCH --array=0-1" in shards["script"] and shards["ran"] == [0, 0]
    assert f"--dependency=afterok:{shards['id']}" in merge["args"] and merge["ran"] == [0]
    assert (out / "jobs" / "vlprm-synthesis-shards.sbatch").is_file()
    rows = export_rows(out)
    assert rows and rows == export_rows(ref)
