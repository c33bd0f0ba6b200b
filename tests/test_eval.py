"""The evaluation runner end to end on the tiny model: generated puzzles and a MathVista-format
fixture, every strategy, metrics for every k, tables and plots, resume after kill -9, the
VisualProcessBench mode, and the launcher's quoting."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_benchmarks import MATHVISTA, write_img, write_jsonl  # real-format fixtures

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory):
    from vlprm.puzzles import generate_puzzles

    root = tmp_path_factory.mktemp("benchmarks")
    generate_puzzles(root / "puzzles", 4, seed=5)
    mv = root / "MathVista" / "data"
    mv.mkdir(parents=True)
    (mv / "testmini.json").write_text(json.dumps(MATHVISTA))
    write_img(mv / "images" / "1.jpg", (255, 0, 0), "JPEG")
    for pid in ("2", "3", "4"):
        write_img(mv / "images" / f"{pid}.png")
    return root


def _cfg(tiny_model_dir, bench_dirs, out, **over):
    from vlprm.config import build_dataclass
    from vlprm.evaluation.config import EvalConfig

    data = {
        "benchmarks": [{"name": "puzzles", "path": str(bench_dirs / "puzzles")},
                       {"name": "mathvista", "path": str(bench_dirs / "MathVista"), "limit": 2}],
        "policy": {"backend": "vllm", "model": str(tiny_model_dir), "n": 4, "max_tokens": 24,
                   "max_model_len": 4096},
        "prm": {"model": str(tiny_model_dir), "batch_size": 4, "outcome": True},
        "search": {"strategies": ["greedy", "beam", "dvts"], "n": 2, "beam_width": 2, "n_subtrees": 2,
                   "max_steps": 2, "max_step_tokens": 12},
        "output_root": str(out), "plots": True,
    }
    data.update(over)
    return build_dataclass(EvalConfig, data).validate()


@pytest.mark.slow
def test_end_to_end_every_strategy_metrics_and_plots(tiny_model_dir, bench_dirs, tmp_path):
    from vlprm.evaluation.runner import run

    cfg = _cfg(tiny_model_dir, bench_dirs, tmp_path)
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    assert run_dir.name.startswith("tts_policy-") and "N4" in run_dir.name
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(m["benchmarks"]) == {"puzzles", "mathvista", "overall"}
    assert m["benchmarks"]["puzzles"]["counts"]["problems"] == 4
    assert m["benchmarks"]["mathvista"]["counts"]["problems"] == 2
    for bench in m["benchmarks"].values():
        assert bench["ks"] == [1, 2, 4]
        # (+ the VL-PRM authors' outcome rule, vlprm.metrics.VLPRM_OUTCOME_ROW)
        assert set(bench["bon@k"]) == {"mean", "min", "last", "product", "vlprm", "outcome", "vlprm_outcome"}
        # pass@1 is the mean correctness of all candidates; pass@k never falls with k
        p = bench["pass@k"]
        assert p["1"] <= p["2"] <= p["4"]
        # every BoN value is a valid expected accuracy, at most the oracle
        for d in bench["bon@k"].values():
            assert all(0.0 <= d[k] <= p[k] + 1e-9 for k in d)
    # pass@1 agrees with the candidates file
    cands = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 6 and all(len(c["candidates"]) == 4 for c in cands)
    puzzle_cands = [c for c in cands if c["benchmark"] == "puzzles"]
    expect = sum(x["correct"] for c in puzzle_cands for x in c["candidates"]) / 16
    assert m["benchmarks"]["puzzles"]["pass@k"]["1"] == pytest.approx(expect)
    scores = [json.loads(x) for x in (run_dir / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 6
    for s, c in zip(sorted(scores, key=lambda r: r["id"]), sorted(cands, key=lambda r: r["id"])):
        assert len(s["scores"]) == 4 and len(s["outcome"]) == 4
        for st, cand in zip(s["scores"], c["candidates"]):
            assert len(st["p_plus"]) == max(1, len(cand["steps"]))
            assert all(0.0 < p < 1.0 for p in st["p_plus"])
    for strategy in ("greedy", "beam", "dvts"):
        per = m["search"][strategy]
        assert per["overall"]["problems"] == 6
        assert per["overall"]["policy_tokens"] > 0 and per["overall"]["prm_tokens"] > 0
    md = (run_dir / "metrics.md").read_text()
    assert "bon@k[outcome]" in md and "| greedy |" in md
    assert (run_dir / "metrics.csv").read_text().startswith("benchmark,metric,k=1,k=2,k=4")
    plots = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert plots == ["accuracy_vs_n_mathvista.png", "accuracy_vs_n_overall.png", "accuracy_vs_n_puzzles.png"]
    assert (run_dir / "config.yaml").exists()

    # A second run finds everything done: nothing is sampled or scored again.
    again = run(cfg)
    assert again["sample"]["new"] == 0 and again["score"]["new"] == 0
    assert all(v["new"] == 0 for v in again["search"].values())


@pytest.mark.slow
def test_kill_during_sampling_then_resume_loses_and_duplicates_nothing(tiny_model_dir, bench_dirs, tmp_path):
    import yaml

    cfg = _cfg(tiny_model_dir, bench_dirs, tmp_path, stages=["sample"])
    cfg.policy.batch_problems = 1  # one problem per generate call: the kill lands mid-stage
    from dataclasses import asdict

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(asdict(cfg)))
    run_dir = tmp_path / cfg.name()
    cmd = [sys.executable, str(REPO / "eval" / "run_eval.py"), "--config", str(cfg_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cand = run_dir / "candidates.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not cand.exists() or len(cand.read_text().splitlines()) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {json.loads(x)["id"]: x for x in cand.read_text().splitlines() if x.strip().endswith("}")}
    assert 2 <= len(before) < 6, "the kill should land mid-stage"
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = [x for x in cand.read_text().splitlines() if x.strip()]
    ids = [json.loads(x)["id"] for x in lines]
    assert len(ids) == len(set(ids)) == 6  # nothing lost, nothing duplicated
    kept = {json.loads(x)["id"]: x for x in lines}
    assert all(kept[i] == before[i] for i in before)  # finished records untouched


@pytest.fixture
def vpb_dir(tmp_path):
    root = tmp_path / "VisualProcessBench"
    recs = [
        {"image": ["images/a.png"], "question": "Which bar is taller?", "answer": "B",
         "response": {"steps": ["The first bar is 3.", "The second is 5.", "So A."],
                      "process_correctness": [1, 1, -1]}, "policy_model": "x", "data_source": "MMMU"},
        {"image": "images/b.png", "question": "How many triangles?", "answer": "5",
         "response": {"steps": ["I count 5 triangles.", "Answer: 5"], "process_correctness": [1, 0]},
         "policy_model": "y", "data_source": "MathVision"},
        {"image": ["images/missing.png"], "question": "?", "answer": "1",
         "response": {"steps": ["a"], "process_correctness": [1]}, "policy_model": "y", "data_source": "MathVision"},
    ]
    write_jsonl(root / "test.jsonl", recs)
    write_img(root / "images" / "a.png")
    write_img(root / "images" / "b.png", (255, 0, 0))
    return root


def test_processbench_mode_reports_f1_per_source(tiny_model_dir, vpb_dir, tmp_path):
    from vlprm.config import build_dataclass
    from vlprm.evaluation.config import EvalConfig
    from vlprm.evaluation.runner import run

    cfg = build_dataclass(EvalConfig, {
        "mode": "processbench", "benchmarks": [{"name": "visualprocessbench", "path": str(vpb_dir)}],
        "prm": {"model": str(tiny_model_dir), "threshold": 0.5}, "output_root": str(tmp_path)}).validate()
    summary = run(cfg)
    res = summary["processbench"]
    assert res["scored"] == 2  # the record with a missing image is skipped at load
    assert summary["load"]["visualprocessbench"]["skipped"] == 1
    f1 = res["step_f1"]
    assert set(f1["per_source"]) == {"MMMU", "MathVision"}
    assert f1["n_neutral_steps"] == 1 and f1["overall"]["n_steps"] == 4
    md = (Path(summary["run_dir"]) / "metrics.md").read_text()
    assert "| MMMU |" in md and "| overall |" in md


@pytest.mark.slow
def test_evpv_is_a_scorer_choice_of_the_runner(tiny_model_dir, bench_dirs, tmp_path):
    """scorer: evpv gates the PRM's step scores by premise reliability inside the same runner;
    the tiny describer/verifier's unreadable replies fall back to reliability 1 and are counted."""
    from vlprm.evaluation.runner import run

    over = {"scorer": "evpv", "evpv": {"max_tokens_describe": 16, "max_tokens_extract": 16,
                                       "max_tokens_verify": 16, "progress": False},
            "benchmarks": [{"name": "puzzles", "path": str(bench_dirs / "puzzles"), "limit": 2}],
            "search": {"strategies": []}}
    cfg = _cfg(tiny_model_dir, bench_dirs, tmp_path, **over)
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    assert "_evpv_" in run_dir.name
    scores = [json.loads(x) for x in (run_dir / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 2
    for rec in scores:
        for st in rec["scores"]:
            assert st["mode"] == "evpv" and "evpv" in st["extra"]
            ev = st["extra"]["evpv"]
            # gated = base where nothing could be verified (fallback reliability 1.0)
            assert len(ev["reliability"]) == len(st["p_plus"])
            for p, base, r in zip(st["p_plus"], ev["base"], ev["reliability"]):
                assert p <= base + 1e-9 and 0.0 <= r <= 1.0
    ev = summary["evpv"]
    assert ev["describe_requests"] == 2 and ev["describe_failed"] == 2  # unreadable, counted
    assert ev["steps"] == sum(len(st["p_plus"]) for rec in scores for st in rec["scores"])
    assert (run_dir / "evpv_cache" / "descriptions.jsonl").exists()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["benchmarks"]["puzzles"]["counts"]["problems"] == 2


# --------------------------------------------------------------------------- shards, merge, resume (stubs)


class _StubPolicy:
    """A deterministic policy: candidate i of a request answers from (seed, i); a continued
    solution (step search) gets one boxed final step."""

    model = "stub-policy"

    def generate(self, requests, sampling, *, progress=True, desc=None):
        from vlprm.backends import Completion, GenerationResult

        out = []
        for req in requests:
            comps = []
            for i in range(sampling.n):
                ans = ["A", "B", "C", "6", "60", "1000", "1.2"][(req.seed + 3 * i) % 7]
                text = (f"The answer is \\boxed{{{ans}}}" if req.continue_final_message else
                        f"Step 1: I look at the image ({i}).\n\nStep 2: I reason.\n\nThe answer is \\boxed{{{ans}}}")
                comps.append(Completion(text=text, finish_reason="stop", num_tokens=5 + i))
            out.append(GenerationResult(completions=comps, prompt_tokens=20, request_id=req.id))
        return out


class _StubScorer:
    """P(+) of a step from a hash of (question, step, position): the same in every process."""

    def __init__(self, mode="one_pass"):
        self.mode = mode

    def score(self, samples):
        import hashlib

        from vlprm.prm.scorer import StepScores

        out = []
        for s in samples:
            steps = ["\n\n".join(s.steps)] if self.mode == "outcome" else s.steps
            p = [int(hashlib.sha1(f"{s.question}|{k}|{t}".encode()).hexdigest()[:6], 16) / 0xFFFFFF
                 for k, t in enumerate(steps)]
            out.append(StepScores(p_plus=[round(x, 3) for x in p], num_tokens=7 * len(steps), id=s.id, mode=self.mode))
        return out


@pytest.fixture
def stub_models(monkeypatch):
    from vlprm.evaluation import runner

    monkeypatch.setattr(runner, "make_policy", lambda cfg: _StubPolicy())
    monkeypatch.setattr(runner, "make_prm_scorer", lambda cfg, mode="one_pass": _StubScorer(mode))


# A stub PRM has no settings record (vlprm_prm.json): its settings are given explicitly.
STUB_PRM_SETTINGS = {"system_prompt": "vlprm", "step_suffix": ""}


def _stub_cfg(bench_dirs, out, **over):
    from vlprm.config import build_dataclass
    from vlprm.evaluation.config import EvalConfig

    # MathVision ids "3" and "4" are MathVista ids too: ids are unique only within a benchmark.
    mvis = bench_dirs / "MathVision"
    if not mvis.exists():
        recs = [{"id": "3", "question": "How many digits?", "options": [], "answer": "6", "image": "images/3.jpg"},
                {"id": "4", "question": "Which one?", "options": ["A", "B", "C"], "answer": "B",
                 "image": "images/4.jpg"}]
        write_jsonl(mvis / "data" / "test.jsonl", recs)
        for r in recs:
            write_img(mvis / r["image"], (9, 9, 9), "JPEG")
    data = {
        "benchmarks": [{"name": "puzzles", "path": str(bench_dirs / "puzzles")},
                       {"name": "mathvista", "path": str(bench_dirs / "MathVista")},
                       {"name": "mathvision", "path": str(mvis)}],
        "policy": {"backend": "vllm", "model": "stub-policy", "n": 4},
        "prm": {"model": "stub-prm", "outcome": True, **STUB_PRM_SETTINGS},
        "search": {"strategies": ["greedy", "beam"], "n": 2, "max_steps": 2},
        "output_root": str(out), "plots": False,
    }
    data.update(over)
    return build_dataclass(EvalConfig, data).validate()


def test_sharded_jobs_then_merge_equal_one_unsharded_run(bench_dirs, tmp_path, stub_models):
    """What launch_eval.sh runs (one job per benchmark x shard, then --stages metrics) gives the
    metrics of one unsharded run, every job writes its own files, and resumes redo nothing."""
    from vlprm.evaluation.runner import run

    one = run(_stub_cfg(bench_dirs, tmp_path / "one"))
    m_one = json.loads((Path(one["run_dir"]) / "metrics.json").read_text())
    # Colliding ids of two benchmarks are two problems, each graded against its own answer.
    assert m_one["benchmarks"]["mathvista"]["counts"]["problems"] == 4
    assert m_one["benchmarks"]["mathvision"]["counts"]["problems"] == 2
    assert m_one["benchmarks"]["puzzles"]["counts"]["problems"] == 4
    assert m_one["search"]["greedy"]["overall"]["problems"] == 10

    sharded_root = tmp_path / "sharded"
    for bench in ("puzzles", "mathvista", "mathvision"):
        for i in range(2):
            run(_stub_cfg(bench_dirs, sharded_root, only_benchmarks=[bench], shard=f"{i}/2",
                          stages=["sample", "score", "search"]))
    merged = run(_stub_cfg(bench_dirs, sharded_root, stages=["metrics"]))
    assert [p.name for p in sharded_root.iterdir()] == [Path(one["run_dir"]).name]  # one run dir for all jobs
    run_dir = Path(merged["run_dir"])
    names = sorted(p.name for p in run_dir.glob("candidates*.jsonl"))
    # (a shard that got no problem of a benchmark writes no file)
    assert names and set(names) <= {f"candidates.{b}.shard{i}of2.jsonl" for b in ("puzzles", "mathvista", "mathvision")
                                    for i in range(2)}
    for name in names:
        bench = name.split(".")[1]
        assert all(json.loads(x)["benchmark"] == bench for x in (run_dir / name).read_text().splitlines())
    m_sh = json.loads((run_dir / "metrics.json").read_text())
    assert m_sh["benchmarks"] == m_one["benchmarks"]
    assert m_sh["search"] == m_one["search"]

    # Resume: nothing is redone, whether with the same layout or another one (unsharded here).
    again = run(_stub_cfg(bench_dirs, tmp_path / "one"))
    assert again["sample"]["new"] == 0 and again["score"]["new"] == 0
    assert all(v["new"] == 0 for v in again["search"].values())
    other = run(_stub_cfg(bench_dirs, sharded_root, stages=["sample", "score", "search"]))
    assert other["sample"]["new"] == 0 and other["score"]["new"] == 0
    assert all(v["new"] == 0 for v in other["search"].values())
    assert not (run_dir / "candidates.jsonl").exists() or not (run_dir / "candidates.jsonl").read_text().strip()


def test_changed_search_settings_and_prm_checkpoint_never_reuse_results(bench_dirs, tmp_path, stub_models):
    from vlprm.evaluation.runner import run, search_stem

    cfg = _stub_cfg(bench_dirs, tmp_path, benchmarks=[{"name": "puzzles", "path": str(bench_dirs / "puzzles")}],
                    search={"strategies": ["greedy"], "n": 2, "max_steps": 2})
    run(cfg)
    cfg2 = _stub_cfg(bench_dirs, tmp_path, benchmarks=[{"name": "puzzles", "path": str(bench_dirs / "puzzles")}],
                     search={"strategies": ["greedy"], "n": 2, "max_steps": 2, "final_aggregation": "min"})
    assert search_stem(cfg2, "greedy") != search_stem(cfg, "greedy")
    assert cfg2.name() == cfg.name()  # same candidates and scores
    assert run(cfg2)["search"]["greedy"]["new"] == 4
    # A PRM retrained in place: its scores must not be mixed with the old ones (search included).
    prm = tmp_path / "prm"
    prm.mkdir()
    (prm / "model.safetensors").write_bytes(b"v1")
    cfg3 = _stub_cfg(bench_dirs, tmp_path / "b", benchmarks=[{"name": "puzzles", "path": str(bench_dirs / "puzzles")}],
                     prm={"model": str(prm), **STUB_PRM_SETTINGS}, search={"strategies": ["greedy"], "n": 2, "max_steps": 2})
    run(cfg3)
    (prm / "model.safetensors").write_bytes(b"v2 longer")
    with pytest.raises(RuntimeError, match="another PRM checkpoint"):
        run(_stub_cfg(bench_dirs, tmp_path / "b", benchmarks=[{"name": "puzzles", "path": str(bench_dirs / "puzzles")}],
                      prm={"model": str(prm), **STUB_PRM_SETTINGS}, search={"strategies": ["greedy"], "n": 2, "max_steps": 2},
                      stages=["search"]))


def test_launch_eval_local_mode_passes_quoted_extra_as_one_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("benchmarks:\n  - {name: mmmu, path: x}\n  - {name: mmmu, path: x, split: dev}\n")
    fake_py = tmp_path / "py"
    fake_py.write_text('#!/bin/bash\nfor a in "$@"; do echo "ARG:$a"; done\n')
    fake_py.chmod(0o755)
    env = {**os.environ, "CONFIG": str(cfg), "PYTHON": str(fake_py),
           "EXTRA": "--benchmarks '[{name: x, path: y}]' --policy.n 8"}
    out = subprocess.run(["bash", str(REPO / "eval" / "launch_eval.sh")], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "ARG:[{name: x, path: y}]" in out.splitlines() and "ARG:8" in out.splitlines()
    # Scheduler jobs (an array of 2 shards + the merge; tests/test_cluster.py) get the same value.
    env.update(SCHEDULER="pbs", DRY_RUN="1", SHARDS="2", OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    out = subprocess.run(["bash", str(REPO / "eval" / "launch_eval.sh")], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.count("#PBS -N ") == 2 and out.count("--benchmarks '[{name: x, path: y}]' --policy.n 8") == 2


def test_processbench_shards_then_metrics_merge_scores_nothing_again(vpb_dir, tmp_path, stub_models, monkeypatch):
    from vlprm.config import build_dataclass
    from vlprm.evaluation import runner
    from vlprm.evaluation.config import EvalConfig

    def cfg(**over):
        return build_dataclass(EvalConfig, {
            "mode": "processbench", "benchmarks": [{"name": "visualprocessbench", "path": str(vpb_dir)}],
            "prm": {"model": "stub-prm", **STUB_PRM_SETTINGS}, "output_root": str(tmp_path), **over}).validate()

    one = runner.run(cfg(output_root=str(tmp_path / "one")))["processbench"]
    for i in range(2):
        runner.run(cfg(shard=f"{i}/2", stages=["score"]))
    monkeypatch.setattr(runner, "make_prm_scorer", lambda *a, **k: pytest.fail("a metrics-only run loads no PRM"))
    merged = runner.run(cfg(stages=["metrics"]))["processbench"]
    assert merged["scored"] == one["scored"] == 2
    assert merged["step_f1"] == one["step_f1"]


def test_failed_sampling_is_reported_and_retried_only_when_asked(bench_dirs, tmp_path, stub_models, monkeypatch):
    """An HTTP failure is recorded with its reason and counted wrong in the metrics; a rerun with
    retry_failed samples it again, scores the new candidates and counts the problem."""
    from vlprm.backends import GenerationResult
    from vlprm.evaluation import runner

    class Flaky(_StubPolicy):
        fail = True

        def generate(self, requests, sampling, **kw):
            out = super().generate(requests, sampling, **kw)
            if Flaky.fail and not requests[0].continue_final_message:
                out[0] = GenerationResult(error="APIConnectionError: refused after 3 attempts",
                                          request_id=requests[0].id)
            return out

    monkeypatch.setattr(runner, "make_policy", lambda cfg: Flaky())
    over = {"benchmarks": [{"name": "puzzles", "path": str(bench_dirs / "puzzles")}],
            "search": {"strategies": []}}
    first = runner.run(_stub_cfg(bench_dirs, tmp_path, **over))
    # One record convention (status, reason, detail) in both pipelines: the reason is classified.
    assert first["sample"]["failed"] == {"http_error": 1}
    m = json.loads((Path(first["run_dir"]) / "metrics.json").read_text())
    # The failed problem is not dropped: it counts as wrong in every row (issue 11).
    assert m["benchmarks"]["puzzles"]["counts"]["problems"] == 4
    assert m["benchmarks"]["puzzles"]["counts"]["failed_problems"] == 1
    again = runner.run(_stub_cfg(bench_dirs, tmp_path, **over))
    assert again["sample"]["new"] == 0  # not retried unless asked
    assert again["sample"]["failed_before"] == 1  # ... and the summary says so
    Flaky.fail = False
    retried = runner.run(_stub_cfg(bench_dirs, tmp_path, retry_failed=True, **over))
    assert retried["run_dir"] == first["run_dir"]
    assert retried["sample"]["new"] == 1 and retried["score"]["new"] == 1
    m = json.loads((Path(retried["run_dir"]) / "metrics.json").read_text())
    assert m["benchmarks"]["puzzles"]["counts"]["problems"] == 4
    assert m["benchmarks"]["puzzles"]["counts"]["failed_problems"] == 0


def test_visuals_compare_runs_in_one_figure(tmp_path):
    from vlprm.metrics import tts_metrics

    runs = []
    for name, scores in (("prm-a", [0.9, 0.1, 0.5, 0.2]), ("prm-b", [0.1, 0.9, 0.5, 0.2])):
        cands = {"p1": [{"answer": a, "correct": a == "A", "score": {"last": s}}
                        for a, s in zip("ABAC", scores)]}
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"benchmarks": {"puzzles": tts_metrics(cands)}}))
        runs.append(str(d))
    out = tmp_path / "cmp.png"
    res = subprocess.run([sys.executable, str(REPO / "visuals" / "plot_results.py"), *runs,
                          "--metrics", "pass@k", "bon@k[last]", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, str(REPO / "visuals" / "plot_results.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "not an evaluation run directory" in bad.stderr


def test_search_choice_reaches_the_search_and_names_its_results(tmp_path, tiny_model_dir):
    """`--search.choice vlprm_rule` (the VL-PRM authors' rule) is an eval key: it reaches the
    SearchConfig, changes the result file's name, and a wrong value is one ConfigError."""
    from vlprm.config import ConfigError, load_config
    from vlprm.evaluation.config import EvalConfig
    from vlprm.evaluation.search_stage import search_stem

    base = ["--prm.model", str(tiny_model_dir), "--search.strategies", "greedy"]
    default = load_config(EvalConfig, "eval/configs/tiny.yaml", base)
    rule = load_config(EvalConfig, "eval/configs/tiny.yaml", base + ["--search.choice", "vlprm_rule"])
    assert rule.search.search_config("greedy", rule.policy, 0).choice == "vlprm_rule"
    assert default.search.search_config("greedy", default.policy, 0).choice == "max_score"
    assert search_stem(rule, "greedy") != search_stem(default, "greedy")
    with pytest.raises(ConfigError, match="search.choice"):
        load_config(EvalConfig, "eval/configs/tiny.yaml", base + ["--search.choice", "best"])
