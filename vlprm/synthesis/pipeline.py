"""The rollout data synthesis run: five resumable stages on the run layer (`vlprm.runs`).

    python rollout_data_generation/run.py --config rollout_data_generation/configs/tiny.yaml \\
        --mc.method binary_search --policy.n 4 --stages rollouts,mc,combine,export

Stages (each reads the previous stage's file and appends to its own, keyed by a stable id):

    problems      OUT/problems.jsonl   the benchmark problems of this shard (always loaded)
    rollouts      OUT/rollouts.jsonl   N policy solutions per problem, split into steps
    mc            OUT/mc.jsonl         Monte Carlo step evidence (per_step | binary_search)
    judge         OUT/judge.jsonl      a VLM judge's per-step review (online, or a batch file)
    combine       OUT/combined.jsonl   labels of every view, computed from the evidence
    export        OUT/export/          the PRM training set + OUT/report.md + OUT/plots/

A killed run resumes where it stopped (`vlprm.synthesis.stages`). combined.jsonl and export/
are recomputed from the evidence every time (cheap, and always canonical: sorted by id).
With ``--shard i/n`` a job works on a deterministic subset of the problems and writes its own
files (OUT/rollouts.shard<i>of<n>.jsonl, ...); combine and export run once all shards are done,
in a run without --shard (`--stages combine,export`, or merge_shards.py), which reads every
shard's files. OUT/skipped.jsonl lists every skipped problem and failed record.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from vlprm.data.schema import Problem, Solution
from vlprm.runs import (RunError, StageSummary, failed_entries, format_summary, image_cache_dir, in_shard,
                        parse_shard, prepare_run_dir, read_stage, shard_tag, skipped_entries, stage_file,
                        stage_files, write_skipped)
from vlprm.synthesis.config import STAGES, SynthesisConfig

log = logging.getLogger(__name__)

# stage -> file stem (OUT/<stem><shard tag>.jsonl)
STAGE_FILES = {"problems": "problems", "rollouts": "rollouts", "mc": "mc", "judge": "judge",
               "combine": "combined"}


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> SynthesisConfig:
    """A config from a YAML file plus command-line style overrides ("--mc.method", "binary_search"
    or "--mc.method=binary_search"); values are read as YAML ("4" -> 4, "null" -> None)."""
    from vlprm import config

    return config.load_config(SynthesisConfig, path, overrides)


class StageStore:
    """This job's file of a stage plus every job's records, so "done" sees all layouts."""

    def __init__(self, run_dir: Path, stem: str, tag: str, retry_failed: bool):
        from vlprm.data.store import JsonlStore

        self.store = JsonlStore(stage_file(run_dir, stem, tag))  # repairs a torn last line first
        self.records = read_stage(run_dir, stem)
        self.retry_failed = retry_failed

    def done(self, key: str) -> bool:
        from vlprm.runs import is_done

        return is_done(self.records.get(key), self.retry_failed)

    def failed_before(self, key: str) -> bool:
        """Failed in an earlier run and kept failed (not retried in this one)."""
        from vlprm.runs import is_failed

        rec = self.records.get(key)
        return rec is not None and is_failed(rec) and not self.retry_failed

    def append(self, rec: dict) -> None:
        self.store.append(rec)
        self.records[str(rec["id"])] = rec

    def close(self) -> None:
        self.store.close()


def check_layout(out: Path) -> None:
    """Refuse a run dir holding shards of the old layout (one directory per shard)."""
    old = sorted(p for p in (out / "shards").glob("*-of-*") if p.is_dir() and (p / "problems.jsonl").exists())
    if old:
        raise RunError(f"{out / 'shards'} holds {len(old)} shard run(s) of the old layout (one directory per "
                       f"shard): join them first with `python rollout_data_generation/merge_shards.py --run {out}`, "
                       "then rerun")


class Synthesis:
    """Runs the stages of a `SynthesisConfig`. Generators are created only when a stage has work."""

    def __init__(self, cfg: SynthesisConfig):
        self.cfg = cfg.validate()
        self.shard = parse_shard(cfg.shard)
        self.tag = shard_tag(cfg.shard)
        self.out = prepare_run_dir(cfg.out, "out")
        check_layout(self.out)
        self.summaries: list[StageSummary] = []
        self.skipped: list[dict] = []
        self._policy = None
        self._judge = None
        self.problems: list[Problem] = []
        self.seconds = 0.0

    # -- helpers for the stages

    def path(self, stage: str) -> Path:
        return stage_file(self.out, STAGE_FILES[stage], self.tag)

    def stage_store(self, stage: str) -> StageStore:
        return StageStore(self.out, STAGE_FILES[stage], self.tag, self.cfg.retry_failed)

    def delay(self) -> None:
        if self.cfg.item_delay > 0:
            time.sleep(self.cfg.item_delay)

    def policy(self):
        if self._policy is None:
            from vlprm.backends import generator_for

            self._policy = generator_for(self.cfg.policy)
        return self._policy

    def check_models(self) -> None:
        """Refuse a policy or judge model path that does not exist, or a backend setting the
        backend does not take, before any stage runs (not after hours of rollouts); generators
        given to the runner are taken as they are."""
        from vlprm.backends import check_section

        stages = set(self.cfg.stages)
        if self._policy is None and stages & {"rollouts", "mc"}:
            check_section(self.cfg.policy, "policy")
        if self._judge is None and "judge" in stages and self.cfg.judge.mode == "online":
            check_section(self.cfg.judge, "judge")

    def judge_generator(self):
        if self._judge is None:
            from vlprm.backends import backend_kwargs, check_model, make_generator

            j, p = self.cfg.judge, self.cfg.policy
            check_model(j, "judge.model")
            kw = backend_kwargs(j)
            if j.backend == p.backend == "vllm" and j.model == p.model and not j.backend_kwargs:
                kw = backend_kwargs(p)  # the same engine serves both
            self._judge = make_generator(j.backend, j.model, **kw)
        return self._judge

    def solutions(self) -> list[Solution]:
        """Usable solutions of this run's problems, sorted by id (from every shard's file)."""
        ids = {p.id for p in self.problems}
        recs = read_stage(self.out, "rollouts")
        ok = [r for r in recs.values() if r.get("status") == "ok" and r.get("problem_id") in ids]
        return sorted((Solution.from_dict(r) for r in ok), key=lambda s: s.id)

    # -- problems

    def load_problems(self) -> list[Problem]:
        """The shard's problems, sorted by id: from the benchmark (written to problems.jsonl),
        or from the problems files when the run does not generate rollouts and they exist."""
        t0 = time.time()
        summ = StageSummary("problems")
        if stage_files(self.out, "problems") and "rollouts" not in self.cfg.stages:
            recs = read_stage(self.out, "problems").values()
            problems = [Problem.from_dict(r).resolve_images(self.out) for r in recs]
            problems = [p for p in problems if in_shard(p.id, self.shard)]
            summ.note = f"read from {self.out}/problems*.jsonl"
        else:
            problems, report = self._load_benchmark()
            summ.failed.update(report.reasons)
            self.skipped += skipped_entries(report)
            from vlprm.data.store import write_jsonl

            rel = [dataclasses.replace(p, images=[os.path.relpath(i, self.out) for i in p.images]) for p in problems]
            write_jsonl(self.path("problems"), [p.to_dict() for p in rel])
            summ.note = report.summary()
            if self.shard[1] > 1:
                summ.note += f"; {len(problems)} in shard {self.shard[0]}/{self.shard[1]}"
        self.problems = sorted(problems, key=lambda p: p.id)
        summ.written = len(self.problems)
        summ.seconds = time.time() - t0
        self.summaries.append(summ)
        return self.problems

    def _load_benchmark(self):
        from vlprm.data.benchmarks import LoadReport, load_benchmark

        d = self.cfg.data
        if d.generate_puzzles and d.benchmark == "puzzles":
            root = Path(d.path)
            if not root.exists() or not any(p for p in root.glob("*.json") if not p.name.startswith(("_", "."))):
                from vlprm.puzzles import generate_puzzles

                log.info("generating %d puzzles into %s (seed %d)", d.generate_puzzles, root, d.puzzle_seed)
                generate_puzzles(root, d.generate_puzzles, d.puzzle_seed, types=d.puzzle_types)
        report = LoadReport(d.benchmark, d.path)
        kw: dict[str, Any] = {"on_error": d.on_error, "image_cache_dir": image_cache_dir(d.path, d.image_cache_dir)}
        problems = load_benchmark(d.benchmark, d.path, d.split, d.limit, report=report, **kw)
        if report.loaded == 0 and d.limit != 0:  # (limit 0 asks for none)
            raise RunError(f"benchmark {d.benchmark} at {d.path} loaded 0 problems ({report.summary()}); "
                           "fix data.path / data.benchmark or the records listed")
        problems = [p for p in problems if in_shard(p.id, self.shard)]
        return problems, report

    # -- stages 4 and 5 (the others live in stages.py and judge_stage.py)

    def stage_combine(self) -> StageSummary:
        from vlprm.data.store import write_jsonl
        from vlprm.synthesis.combine import combine

        c = self.cfg.combine
        summ = StageSummary("combine")
        recs = combine(self.solutions(), read_stage(self.out, "mc"), read_stage(self.out, "judge"), c.views,
                       threshold=c.threshold, cut_views=c.cut_views)
        write_jsonl(self.path("combine"), recs)
        summ.written = len(recs)
        summ.failed.update(r["reason"] for r in recs if not r["kept"] and r["view"] == self.cfg.export.view)
        summ.note = f"dropped counts are for the export view {self.cfg.export.view}"
        return summ

    def stage_export(self) -> StageSummary:
        from vlprm.data.store import read_jsonl
        from vlprm.synthesis.export import collect_stats, export_dataset, write_report

        summ = StageSummary("export", note=f"view {self.cfg.export.view}")
        if not self.path("combine").exists():
            raise RunError(f"{self.path('combine')} does not exist: run the combine stage first "
                           "(--stages combine,export)")
        combined = list(read_jsonl(self.path("combine")))
        sols = {s.id: s for s in self.solutions()}
        combined = [r for r in combined if r["solution_id"] in sols]
        problems = {p.id: p for p in self.problems}
        summ.written = export_dataset(self.out / "export", combined, sols, problems, self.cfg.export.view,
                                      hf=self.cfg.export.hf)
        rows = list(read_jsonl(self.out / "export" / "prm.jsonl"))
        ids = {p.id for p in self.problems}
        mine = lambda stem: [r for r in read_stage(self.out, stem).values() if r.get("problem_id") in ids]  # noqa: E731
        st = collect_stats(self.problems, mine("rollouts"), mine("mc"), mine("judge"), combined,
                           self.cfg.export.view, rows)
        self.stats = st
        write_report(self.out, st)
        return summ

    # -- driver

    def stage(self, name: str) -> StageSummary:
        from vlprm.synthesis.judge_stage import stage_judge
        from vlprm.synthesis.stages import stage_mc, stage_rollouts

        fns = {"rollouts": stage_rollouts, "mc": stage_mc, "judge": stage_judge}
        return fns[name](self) if name in fns else getattr(self, f"stage_{name}")()

    def run(self) -> list[StageSummary]:
        from vlprm.config import to_yaml

        t_all = time.time()
        self.check_models()
        (self.out / f"config{self.tag}.yaml").write_text(to_yaml(self.cfg), encoding="utf-8")
        self.load_problems()
        for name in STAGES:
            if name not in self.cfg.stages:
                continue
            if self.shard[1] > 1 and name in ("combine", "export"):
                log.info("%s: runs once every shard is done (a run without --shard, --stages combine,export)", name)
                continue
            log.info("stage %s", name)
            t0 = time.time()
            summ = self.stage(name)
            summ.seconds = time.time() - t0
            self.summaries.append(summ)
        self.write_skipped()
        self.seconds = time.time() - t_all
        self.close()
        return self.summaries

    def write_skipped(self) -> Path:
        """OUT/skipped.jsonl: the problems skipped at load and every failed record of the stages."""
        ids = {p.id for p in self.problems}
        entries = list(self.skipped)
        for stage in ("rollouts", "mc", "judge"):
            recs = [r for r in read_stage(self.out, STAGE_FILES[stage]).values() if r.get("problem_id") in ids]
            entries += failed_entries(sorted(recs, key=lambda r: r["id"]), stage, str(self.path(stage)),
                                      self.cfg.data.benchmark)
        return write_skipped(self.out, entries, self.tag)

    def close(self) -> None:
        """Close the judge's HTTP client; the policy's vLLM engine stays cached for the process."""
        if self._judge is not None and self._judge is not self._policy:
            self._judge.close()

    def summary_text(self) -> str:
        extra = []
        st = getattr(self, "stats", None)
        if st:
            extra.append(f"rollouts spent: {st['rollouts']['records']} solutions + {st['mc']['rollouts']} MC "
                         f"continuations; export: {st['export']['rows']} rows ({st['export']['view']}); "
                         f"report: {self.out / 'report.md'}")
        extra.append(f"skipped and failed records: {stage_file(self.out, 'skipped', self.tag)}")
        return format_summary(f"synthesis summary ({self.out}):", self.summaries, self.seconds, extra)


def run_synthesis(cfg: SynthesisConfig) -> Synthesis:
    """Run every configured stage; returns the runner (summaries, stats, out dir)."""
    syn = Synthesis(cfg)
    syn.run()
    print(syn.summary_text(), flush=True)
    return syn


USAGE = """usage: run.py [--config FILE.yaml] [--section.key VALUE ...]

Turn problems into a PRM training set: rollouts -> mc -> judge -> combine -> export.
Any config key can be overridden on the command line, e.g.
  --mc.method binary_search --policy.n 4 --stages rollouts,mc,combine,export --shard 0/4
Failed records stay failed on a rerun; --retry_failed retries them.
"""


def main(argv: Sequence[str] | None = None) -> int:
    from vlprm.runs import cli_main

    return cli_main(SynthesisConfig, argv, run_synthesis, USAGE)
