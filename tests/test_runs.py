"""The run layer (vlprm/runs.py) under synthesis and evaluation, and the rules that nothing is
dropped silently: failed problems count as wrong, tables say what they cover, 0 problems or 0
scored steps are errors, skipped.jsonl names every skipped or failed record, one CLI dialect.
Stub policy and PRM (tests/test_eval.py); real loaders, stores and metrics."""

import json
import shutil
from pathlib import Path

import pytest

from test_benchmarks import mmmu_dir  # noqa: F401 (fixture)
from test_eval import (_StubPolicy, _StubScorer, _stub_cfg, bench_dirs, stub_models,  # noqa: F401 (fixtures)
                       vpb_dir)


class _FailingPolicy(_StubPolicy):
    """The stub policy, except that sampling fails for the problems named (an unreadable image)."""

    def __init__(self, fail_ids):
        self.fail_ids = set(fail_ids)

    def generate(self, requests, sampling, **kw):
        from vlprm.backends import GenerationResult

        out = super().generate(requests, sampling, **kw)
        return [GenerationResult(error=f"cannot read image /data/{r.id}.png: truncated", request_id=r.id)
                if r.id in self.fail_ids and not r.continue_final_message else o for r, o in zip(requests, out)]


def _puzzles(bench_dirs):
    return {"name": "puzzles", "path": str(bench_dirs / "puzzles")}


def _puzzle_ids(bench_dirs):
    from vlprm.data.benchmarks import load_benchmark

    return sorted(p.id for p in load_benchmark("puzzles", bench_dirs / "puzzles"))


# --------------------------------------------------------------------------- never drops


def test_a_problem_whose_sampling_failed_counts_wrong_in_every_row(bench_dirs, tmp_path, stub_models, monkeypatch):
    from vlprm.evaluation import runner
    from vlprm.evaluation.tables import candidate_rows
    from vlprm.metrics import tts_metrics
    from vlprm.runs import read_stage

    failed = _puzzle_ids(bench_dirs)[0]
    over = {"benchmarks": [_puzzles(bench_dirs)], "search": {"strategies": []}}
    healthy = runner.run(_stub_cfg(bench_dirs, tmp_path / "ok", **over))
    monkeypatch.setattr(runner, "make_policy", lambda cfg: _FailingPolicy({failed}))
    broken = runner.run(_stub_cfg(bench_dirs, tmp_path / "broken", **over))
    m = json.loads((Path(broken["run_dir"]) / "metrics.json").read_text())["benchmarks"]["puzzles"]
    assert m["counts"]["problems"] == 4 and m["counts"]["failed_problems"] == 1
    # Expected: the other three problems' healthy values, averaged over all four (the failed
    # one contributes 0 to every row).
    cfg = _stub_cfg(bench_dirs, tmp_path / "ok", **over)
    run_dir = Path(healthy["run_dir"])
    rows = candidate_rows(cfg, {"puzzles": runner.load_problems(cfg)[0]["puzzles"]},
                          read_stage(run_dir, "candidates"), read_stage(run_dir, "scores"))["puzzles"]
    others = tts_metrics({k: v for k, v in rows.items() if k != f"puzzles/{failed}"}, seed=0, vote_subsets="random")
    for metric in ("pass@k", "maj@k"):
        for k, v in others[metric].items():
            assert m[metric][str(k)] == pytest.approx(v * 3 / 4), (metric, k)
    for metric in ("bon@k", "weighted@k"):
        assert set(m[metric]) == set(others[metric]) and m[metric]
        for agg, per_k in others[metric].items():
            assert m["counts"]["scored_problems"][agg] == 4  # every BoN / weighted row covers all four
            for k, v in per_k.items():
                assert m[metric][agg][str(k)] == pytest.approx(v * 3 / 4), (metric, agg, k)
    md = (Path(broken["run_dir"]) / "metrics.md").read_text()
    assert "| puzzles | 4 | pass@k |" in md and "| puzzles | 4 | 1 |" in md  # problems, failed


def test_overall_pools_every_benchmark_even_one_whose_sampling_all_failed(bench_dirs, tmp_path, stub_models,
                                                                         monkeypatch):
    from vlprm.evaluation import runner

    cfg = _stub_cfg(bench_dirs, tmp_path, search={"strategies": []})  # puzzles, mathvista, mathvision
    mathvision = [p.id for p in runner.load_problems(cfg)[0]["mathvision"]]
    monkeypatch.setattr(runner, "make_policy", lambda cfg: _FailingPolicy(mathvision))
    summary = runner.run(cfg)
    m = json.loads((Path(summary["run_dir"]) / "metrics.json").read_text())["benchmarks"]
    assert m["mathvision"]["counts"]["problems"] == 2 and m["mathvision"]["counts"]["failed_problems"] == 2
    assert all(v == 0 for v in m["mathvision"]["pass@k"].values())
    total = sum(m[b]["counts"]["problems"] for b in ("puzzles", "mathvista", "mathvision"))
    assert m["overall"]["counts"]["problems"] == total
    assert m["overall"]["counts"]["benchmarks"] == ["mathvision", "mathvista", "puzzles"]
    assert "overall pools the problems of 3 benchmarks" in (Path(summary["run_dir"]) / "metrics.md").read_text()


def test_a_benchmark_that_loads_no_problem_is_an_error_naming_the_reasons(bench_dirs, tmp_path, stub_models, capsys):
    from vlprm.evaluation import runner
    from vlprm.runs import RunError

    bad = tmp_path / "bad-puzzles"
    shutil.copytree(bench_dirs / "puzzles", bad)
    shutil.rmtree(bad / "images")
    cfg = _stub_cfg(bench_dirs, tmp_path, benchmarks=[_puzzles(bench_dirs), {"name": "puzzles", "path": str(bad),
                                                                          "split": "broken"}])
    with pytest.raises(RunError, match=r"puzzles-broken .* loaded 0 problems.*image file not found"):
        runner.run(cfg)
    # The CLI: one line, exit 1, no traceback.
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"benchmarks: [{{name: puzzles, path: '{bad}'}}]\npolicy: {{model: stub}}\n"
                        f"output_root: '{tmp_path / 'cli'}'\n")
    assert runner.main(["--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "loaded 0 problems" in errors[0] and "Traceback" not in err


def test_processbench_with_no_scored_step_fails_and_reports_first_error_f1(vpb_dir, tmp_path, monkeypatch):
    from vlprm.config import build_dataclass
    from vlprm.evaluation import runner
    from vlprm.evaluation.config import EvalConfig
    from test_eval import STUB_PRM_SETTINGS
    from vlprm.runs import RunError

    def cfg(root):
        return build_dataclass(EvalConfig, {
            "mode": "processbench", "benchmarks": [{"name": "visualprocessbench", "path": str(vpb_dir)}],
            "prm": {"model": "stub-prm", **STUB_PRM_SETTINGS}, "output_root": str(root)}).validate()

    class Empty(_StubScorer):
        def score(self, samples):
            return [s.__class__(p_plus=[], num_tokens=0, id=s.id) for s in super().score(samples)]

    monkeypatch.setattr(runner, "make_prm_scorer", lambda *a, **k: Empty())
    with pytest.raises(RunError, match="0 scored steps"):
        runner.run(cfg(tmp_path / "empty"))
    monkeypatch.setattr(runner, "make_prm_scorer", lambda *a, **k: _StubScorer())
    res = runner.run(cfg(tmp_path / "ok"))["processbench"]
    f1 = res["first_error"]["overall"]["f1"]
    assert f1 is not None
    md = (Path(tmp_path / "ok").glob("*/metrics.md").__next__()).read_text()
    overall = next(line for line in md.splitlines() if line.startswith("| overall |"))
    assert overall.rstrip(" |").split("|")[-1].strip() == f"{100 * f1:.1f}"
    assert f"first-error F1 (ProcessBench-style): {100 * f1:.1f}" in md


def test_skipped_jsonl_names_every_skipped_and_failed_record_in_evaluation(bench_dirs, tmp_path, stub_models,
                                                                            monkeypatch):
    from vlprm.evaluation import runner

    data = tmp_path / "puzzles"
    shutil.copytree(bench_dirs / "puzzles", data)
    ids = _puzzle_ids(bench_dirs)
    victim = sorted(p for p in (data / "images").rglob("*") if p.is_file())[0]
    victim.unlink()
    monkeypatch.setattr(runner, "make_policy", lambda cfg: _FailingPolicy({ids[-1]}))
    summary = runner.run(_stub_cfg(bench_dirs, tmp_path / "out", benchmarks=[{"name": "puzzles", "path": str(data)}],
                                   search={"strategies": []}))
    recs = [json.loads(x) for x in Path(summary["skipped_file"]).read_text().splitlines()]
    load = [r for r in recs if r["stage"] == "load"]
    sample = [r for r in recs if r["stage"] == "sample"]
    assert len(load) >= 1 and all(r["benchmark"] == "puzzles" and r["file"].endswith(".json") and r["id"]
                                  and "image file not found" in r["reason"] for r in load)
    assert [(r["benchmark"], r["id"], r["reason"]) for r in sample] == [("puzzles", f"puzzles/{ids[-1]}",
                                                                         "image_unreadable")]
    assert sample[0]["file"].endswith("candidates.jsonl") and "truncated" in sample[0]["detail"]


def _synthesis(bench_dirs, out, **over):
    from vlprm.config import build_dataclass
    from vlprm.synthesis.config import SynthesisConfig

    data = {"out": str(out), "stages": ["rollouts"], "progress": False,
            "data": {"benchmark": "puzzles", "path": str(bench_dirs / "puzzles")},
            "policy": {"model": "stub-policy", "n": 2, "batch_problems": 2}}
    data.update(over)
    return build_dataclass(SynthesisConfig, data).validate()


def _run_synthesis(cfg, policy):
    from vlprm.synthesis.pipeline import Synthesis

    syn = Synthesis(cfg)
    syn._policy = policy  # a generator given to the runner is used as it is
    syn.run()
    return syn


def test_synthesis_failed_records_stay_failed_and_say_so_then_retry(bench_dirs, tmp_path):
    ids = _puzzle_ids(bench_dirs)
    policy = _FailingPolicy({ids[0]})
    first = _run_synthesis(_synthesis(bench_dirs, tmp_path), policy)
    assert first.summaries[-1].failed == {"image_unreadable": 2}
    skipped = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert {(r["stage"], r["benchmark"], r["id"], r["reason"]) for r in skipped} == {
        ("rollouts", "puzzles", f"{ids[0]}#{i}", "image_unreadable") for i in range(2)}
    again = _run_synthesis(_synthesis(bench_dirs, tmp_path), policy)
    roll = again.summaries[-1]
    assert roll.written == 0 and roll.failed_before == 2
    assert "2 record(s) failed in an earlier run and stay failed: rerun with --retry_failed" in again.summary_text()
    policy.fail_ids = set()
    retried = _run_synthesis(_synthesis(bench_dirs, tmp_path, retry_failed=True), policy)
    assert retried.summaries[-1].written == 2 and not retried.summaries[-1].failed
    assert (tmp_path / "skipped.jsonl").read_text() == ""


def test_synthesis_shards_share_one_run_dir_and_old_layout_is_refused(bench_dirs, tmp_path):
    from vlprm.runs import RunError
    from vlprm.synthesis import pipeline

    for i in range(2):
        _run_synthesis(_synthesis(bench_dirs, tmp_path / "sh", shard=f"{i}/2"), _StubPolicy())
    names = sorted(p.name for p in (tmp_path / "sh").glob("rollouts*.jsonl"))
    # (a shard that got no problem writes no file)
    assert names and set(names) <= {"rollouts.shard0of2.jsonl", "rollouts.shard1of2.jsonl"}
    # The unsharded run (the merge) sees every shard's records: nothing is generated again.
    merged = _run_synthesis(_synthesis(bench_dirs, tmp_path / "sh"), _StubPolicy())
    assert merged.summaries[-1].written == 0 and merged.summaries[-1].done_before == 8
    one = _run_synthesis(_synthesis(bench_dirs, tmp_path / "one"), _StubPolicy())
    read = lambda d: sorted(x for p in sorted(d.glob("rollouts*.jsonl")) for x in p.read_text().splitlines())  # noqa: E731
    assert read(tmp_path / "sh") == read(tmp_path / "one")
    old = tmp_path / "old"
    (old / "shards" / "0-of-2").mkdir(parents=True)
    (old / "shards" / "0-of-2" / "problems.jsonl").write_text("")
    with pytest.raises(RunError, match="old layout.*merge_shards.py"):
        pipeline.Synthesis(_synthesis(bench_dirs, old))
    # A model path that does not exist is refused before any stage runs.
    from vlprm.config import ConfigError

    with pytest.raises(ConfigError, match="policy.model: model 'stub-policy' not found"):
        pipeline.run_synthesis(_synthesis(bench_dirs, tmp_path / "nomodel"))
    assert not list((tmp_path / "nomodel").glob("rollouts*"))


def test_loaders_write_images_outside_the_dataset(mmmu_dir, tmp_path, monkeypatch):  # noqa: F811
    from vlprm.config import build_dataclass
    from vlprm.evaluation.config import EvalConfig
    from vlprm.evaluation.problems import load_problems

    monkeypatch.setenv("VLPRM_CACHE", str(tmp_path / "cache"))
    before = sorted(p.relative_to(mmmu_dir) for p in mmmu_dir.rglob("*"))
    cfg = build_dataclass(EvalConfig, {"benchmarks": [{"name": "mmmu", "path": str(mmmu_dir)}],
                                       "policy": {"model": "stub"}}).validate()
    problems = load_problems(cfg)[0]["mmmu"]
    assert len(problems) == 4
    assert all(Path(i).is_relative_to(tmp_path / "cache" / "images") for p in problems for i in p.images)
    assert sorted(p.relative_to(mmmu_dir) for p in mmmu_dir.rglob("*")) == before  # the dataset is untouched


# --------------------------------------------------------------------------- one CLI dialect


@pytest.mark.parametrize("module", ["vlprm.synthesis.pipeline", "vlprm.evaluation.runner"])
def test_both_clis_list_every_key_and_refuse_mistakes_in_one_line(module, tmp_path, capsys):
    import importlib

    main = importlib.import_module(module).main
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for key in ("--policy.top_k", "--policy.backend_kwargs", "--retry_failed", "--seed"):
        assert key in out
    if module.endswith("runner"):
        assert "--evpv.gate" in out and "--search.beam_width" in out and "beam: partial solutions" in out
    for argv in (["--policy.n", "four"], ["--policy.nn", "3"], ["--config", str(tmp_path / "missing.yaml")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], (argv, err)


def test_old_layout_candidate_records_are_read_as_solutions():
    from vlprm.evaluation.sample import candidate_solutions

    old = {"id": "puzzles/p1", "problem_id": "p1", "benchmark": "puzzles", "error": None, "candidates": [
        {"index": 0, "text": "Step 1: a\n\nStep 2: b", "steps": ["a", "b"], "kinds": ["perception", "reasoning"],
         "answer": "B", "correct": True, "num_tokens": 7, "finish_reason": "stop"}]}
    (sol,) = candidate_solutions(old)
    assert sol.id == "p1#0" and [s.text for s in sol.steps] == ["a", "b"] and sol.steps[0].kind == "perception"
    assert sol.final_answer == "B" and sol.correct is True and sol.metadata["num_tokens"] == 7
