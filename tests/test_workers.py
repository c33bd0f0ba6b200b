"""Local node workers (vlprm.jobs.workers): the worker layout, the shard and merge commands, a
failed worker's report, and 2 CPU workers on the tiny model giving the 1-worker run's export
(synthesis) and metrics (evaluation), with a killed worker resumed by re-running the command;
SIGTERM to the launcher stops every worker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_runs import (REPO, SYNTH_CONFIG, env, eval_config, eval_records, export_rows, metrics_of,
                          reference_eval, reference_synthesis, run_launcher, synthesis_args)
from vlprm.config import ConfigError
from vlprm.jobs.pipelines import get_pipeline
from vlprm.jobs.workers import Slot, last_progress, plan_slots


def test_gpu_groups_are_pinned_and_cpu_workers_get_disjoint_cores():
    slots = plan_slots("0,1,2,3", 2, None)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3"]
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in plan_slots("4,5,6,7", 1, 4)] == ["4", "5", "6", "7"]
    with pytest.raises(ConfigError, match="groups of GPUS_PER_WORKER=2"):
        plan_slots("0,1,2", 2, None)
    with pytest.raises(ConfigError, match="WORKERS=3 does not match"):
        plan_slots("0,1,2,3", 2, 3)
    cpu = plan_slots(None, 1, 2)
    assert len(cpu) == 2 and all(s.env()["CUDA_VISIBLE_DEVICES"] == "" for s in cpu)
    cores = [set(s.cpus) for s in cpu]
    assert all(cores) and not cores[0] & cores[1]
    assert cpu[0].env()["OMP_NUM_THREADS"] == str(len(cpu[0].cpus))
    assert plan_slots(None, 1, None) and len(plan_slots(None, 1, None)) == 1
    assert Slot().env() == {"CUDA_VISIBLE_DEVICES": ""}  # more workers than cores: shared, unpinned


def test_shard_and_merge_commands_follow_each_pipeline_cli(tmp_path):
    syn, ev = get_pipeline("synthesis"), get_pipeline("evaluation")
    args = ["--config", "c.yaml", "--out", "O", "--policy.n", "4"]
    assert syn.shard_command("py", args, "O", 1, 2) == ["py", "rollout_data_generation/run.py", *args, "--shard", "1/2"]
    assert syn.shard_command("py", args, "O", 0, 1) == ["py", "rollout_data_generation/run.py", *args]
    assert syn.merge_command("py", args, "O") == ["py", "rollout_data_generation/merge_shards.py", "--run", "O"]
    cfg = tmp_path / "e.yaml"
    cfg.write_text("output_root: from/config\n")
    assert ev.output_dir(["--config", str(cfg)]) == "from/config"
    shard = ev.shard_command("py", ["--config", str(cfg)], "R", 0, 4)
    assert shard[-6:] == [ev.out_flag, "R", "--shard", "0/4", "--stages", "sample,score,search"]
    assert ev.merge_command("py", ["--config", str(cfg)], "R")[-2:] == ["--stages", "metrics"]
    # The user's stages: shards run the sharded ones, and no merge when metrics is not asked.
    assert ev.shard_command("py", ["--stages", "sample"], "R", 1, 2)[-1] == "sample"
    assert ev.merge_command("py", ["--stages", "sample"], "R") is None
    with pytest.raises(ConfigError, match="no output directory"):
        syn.output_dir(["--policy.n", "2"])


def test_last_progress_reads_the_latest_tqdm_refresh(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("start\nrollouts:  10%|#  | 1/10\rrollouts:  50%|#####  | 5/10\r")
    assert last_progress(log).startswith("rollouts:  50%")
    assert last_progress(tmp_path / "missing.log") == ""


def test_failed_workers_are_reported_with_log_and_a_command_that_reruns_the_shard(tmp_path):
    out = tmp_path / "run"
    res = run_launcher("rollout_data_generation/run.sh", {
        "WORKERS": "2", "CONFIG": "rollout_data_generation/configs/tiny.yaml", "OUT": str(out),
        "EXTRA": "--mc.method no-such-method"}, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout
    for i in (0, 1):
        log = out / "logs" / f"worker-{i}.log"
        assert f"worker {i}  shard {i}/2" in text and str(log) in text
        assert "no-such-method" in log.read_text()  # the pipeline's own error is in the worker's log
    assert "merge not run" in text and "run the same command again" in text
    rerun = [ln.strip() for ln in text.splitlines() if "--shard 1/2" in ln and "CUDA_VISIBLE_DEVICES=" in ln]
    assert len(rerun) == 1
    code = int(text.split("worker 1  shard 1/2", 1)[1].split("failed (exit ", 1)[1].split(")")[0])
    again = subprocess.run(["bash", "-c", rerun[0]], env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == code != 0 and "no-such-method" in again.stderr + again.stdout


def _children(pid: int) -> dict[int, str]:
    """{pid: command line} of a process's children."""
    kids = {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "stat").read_text().split(") ")[1].split()[1] == str(pid):
                kids[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
    return kids


def _shard0_files(out: Path) -> dict[str, bytes]:
    """Shard 0's record files (either shard layout: OUT/shards/0-of-2/ or *.shard0of2.jsonl)."""
    return {str(p): p.read_bytes() for p in out.rglob("*.jsonl")
            if ("0-of-2" in p.parts or "shard0of2" in p.name) and "logs" not in p.parts}


@pytest.mark.slow
def test_two_cpu_workers_equal_one_worker_and_a_killed_worker_resumes(tiny_model_dir, tmp_path):
    ref = reference_synthesis(tiny_model_dir)
    out = tmp_path / "two"
    launch_env = env(WORKERS="2", OUT=str(out), CONFIG=SYNTH_CONFIG, EXTRA=" ".join(synthesis_args(tiny_model_dir)))
    proc = subprocess.Popen(["bash", "rollout_data_generation/run.sh"], cwd=REPO, env=launch_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    victim = None
    while victim is None and time.time() < deadline:  # kill worker 1 as soon as it runs
        victim = next((p for p, cmd in _children(proc.pid).items() if "--shard 1/2" in cmd), None)
        time.sleep(0.2)
    assert victim, "worker 1 never started"
    os.kill(victim, signal.SIGKILL)
    first = proc.communicate(timeout=900)[0]
    assert proc.returncode == 1, first
    assert "worker 1  shard 1/2" in first and "failed (exit -9)" in first and "merge not run" in first
    assert str(out / "logs" / "worker-1.log") in first
    done0 = _shard0_files(out)
    assert done0, first

    second = subprocess.run(["bash", "rollout_data_generation/run.sh"], cwd=REPO, env=launch_env,
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "merge ok" in second.stdout
    assert {k: v for k, v in _shard0_files(out).items() if k in done0} == done0  # shard 0: nothing redone
    rows = export_rows(out)
    assert rows and rows == export_rows(ref)
    assert (out / "combined.jsonl").read_text() == (ref / "combined.jsonl").read_text()


@pytest.mark.slow
def test_two_cpu_workers_evaluation_equals_one_worker(tiny_model_dir, tmp_path):
    ref = reference_eval(tiny_model_dir)
    out = tmp_path / "two"
    res = run_launcher("eval/launch_eval.sh", {"WORKERS": "2", "OUT": str(out),
                                               "CONFIG": str(eval_config(tiny_model_dir, tmp_path / "e.yaml"))})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "worker 0  shard 0/2" in res.stdout and "worker 1  shard 1/2" in res.stdout and "merge ok" in res.stdout
    logs = [(out / "logs" / f"worker-{i}.log").read_text() for i in (0, 1)]
    assert all("--shard" in log for log in logs)
    # The same candidates and metrics; the same P(+) up to float summation order (a worker runs
    # torch on 1 thread here, the reference on 2: reductions split differently, ~1e-8 apart).
    assert eval_records(out, "candidates") == eval_records(ref, "candidates")
    assert len(eval_records(ref, "candidates")) == 4
    mine, theirs = eval_records(out, "scores"), eval_records(ref, "scores")
    assert mine.keys() == theirs.keys()
    for key, rec in mine.items():
        for a, b in zip(rec["scores"], theirs[key]["scores"], strict=True):
            assert a["num_tokens"] == b["num_tokens"] and a["p_plus"] == pytest.approx(b["p_plus"], abs=1e-6)
    assert metrics_of(out) == metrics_of(ref)
    assert metrics_of(ref)["benchmarks"]["puzzles"]["counts"]["candidates"] == 8


def test_sigterm_to_the_launcher_stops_every_worker(tiny_model_dir, tmp_path):
    """A scheduler ending the job (SIGTERM) stops the workers too: none is left running."""

    cmd = [sys.executable, "-m", "vlprm.jobs.workers", "synthesis", "--workers", "2", "--",
           "--config", SYNTH_CONFIG, "--out", str(tmp_path / "run"), *synthesis_args(tiny_model_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    kids: dict[int, str] = {}
    while len(kids) < 2 and time.time() < deadline:
        kids = _children(proc.pid)
        time.sleep(0.1)
    assert len(kids) == 2, kids
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and "stopping the workers" in text
    for pid, cmdline in kids.items():  # gone (or its pid reused by another program)
        path = Path(f"/proc/{pid}/cmdline")
        assert not path.exists() or path.read_bytes().replace(b"\0", b" ").decode() != cmdline
