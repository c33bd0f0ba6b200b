"""The rollout data synthesis run: one config dataclass, five resumable stages.

    python rollout_data_generation/run.py --config rollout_data_generation/configs/tiny.yaml \\
        --mc.method binary_search --policy.n 4 --stages rollouts,mc,combine,export

Stages (each reads the previous stage's file and appends to its own, keyed by a stable id):

    problems      OUT/problems.jsonl   the benchmark problems of this shard (always loaded)
    rollouts      OUT/rollouts.jsonl   N policy solutions per problem, split into steps
    mc            OUT/mc.jsonl         Monte Carlo step evidence (per_step | binary_search)
    judge         OUT/judge.jsonl      a VLM judge's per-step review (online, or a batch file)
    combine       OUT/combined.jsonl   labels of every view, computed from the evidence
    export        OUT/export/          the PRM training set + OUT/report.md + OUT/plots/

A killed run resumes where it stopped: items already in a stage file are skipped. Work goes
out in fixed chunks (`*.batch_*` options); a chunk that was cut short is regenerated whole and
only its missing records are written, so the engine sees the same batches as an uninterrupted
run and, with per-request seeds, writes the same records. combined.jsonl and export/ are
recomputed from the evidence every time (cheap, and always canonical: sorted by id).
With ``--shard i/n`` the run works on a deterministic subset of the problems and writes to
OUT/shards/i-of-n/; `merge_shards` joins the shards' stage files by key into OUT and runs
combine + export there.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from vlprm.data.schema import Problem, Solution, solution_id
from vlprm.data.store import JsonlStore, in_shard, merge_jsonl, parse_shard, read_jsonl, write_jsonl

STAGES = ("rollouts", "mc", "judge", "combine", "export")
STAGE_FILES = {"problems": "problems.jsonl", "rollouts": "rollouts.jsonl", "mc": "mc.jsonl",
               "judge": "judge.jsonl", "combine": "combined.jsonl"}


def _opt(default: Any, help: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    benchmark: str = _opt("puzzles", "benchmark loader name (vlprm.data.benchmarks.BENCHMARKS)")
    path: str = _opt("data/puzzles", "local benchmark path (as released) or a datasets hub id")
    split: str | None = _opt(None, "split (loader default if null)")
    limit: int | None = _opt(None, "load at most this many problems (before sharding)")
    generate_puzzles: int | None = _opt(None, "benchmark 'puzzles': generate this many puzzles into path "
                                        "first when it holds none (python -m vlprm.puzzles)")
    puzzle_seed: int = _opt(0, "seed of the generated puzzles")
    puzzle_types: list[str] | None = _opt(None, "puzzle families to generate (null: all)")
    on_error: str = _opt("skip", "bad benchmark records: 'skip' (counted in the summary) or 'raise'")


@dataclass
class PolicyConfig:
    backend: str = _opt("vllm", "policy backend: vllm | openai | hf")
    model: str = _opt("Qwen/Qwen2.5-VL-7B-Instruct", "policy model (local dir, hub id or served name)")
    n: int = _opt(8, "solutions per problem (one request with n=N)")
    style: str = _opt("structured", "solution format: structured (perception then reasoning) | plain")
    temperature: float = _opt(0.7, "sampling temperature")
    top_p: float = _opt(1.0, "nucleus sampling")
    max_tokens: int = _opt(2048, "max new tokens per solution")
    max_steps: int | None = _opt(12, "cap steps per solution by merging adjacent ones (null: no cap)")
    drop_truncated: bool = _opt(True, "record solutions cut at max_tokens as failed (reason 'truncated')")
    batch_problems: int = _opt(64, "problems per generate() call (the resume unit)")
    backend_kwargs: dict = _opt({}, "extra backend arguments (vLLM engine args; base_url etc. for openai)")


@dataclass
class MCConfig:
    method: str = _opt("per_step", "per_step (every prefix) | binary_search (OmegaPRM first-error search)")
    k: int = _opt(8, "continuations per probed prefix (one request with n=K)")
    temperature: float | None = _opt(None, "continuation temperature (null: policy.temperature)")
    max_tokens: int | None = _opt(None, "continuation max tokens (null: policy.max_tokens)")
    early_stop: bool = _opt(False, "per_step: stop probing a solution after its first step with 0 successes")
    last_step_from_answer: bool = _opt(True, "the last step's evidence is the final answer check (no rollouts)")
    batch_solutions: int = _opt(64, "solutions per chunk; one generate() call per round of a chunk")


@dataclass
class JudgeConfig:
    backend: str = _opt("openai", "judge backend: openai (any OpenAI-compatible endpoint) | vllm | hf")
    model: str = _opt("gpt-4o", "judge model (served name for openai; local dir or hub id for vllm)")
    base_url: str | None = _opt(None, "OpenAI-compatible endpoint (null: $OPENAI_BASE_URL or OpenAI's)")
    api_key_env: str = _opt("OPENAI_API_KEY", "environment variable holding the API key")
    mode: str = _opt("online", "online (call the endpoint) | batch (write/read an OpenAI batch file)")
    batch_runner: str | None = _opt(None, "batch mode: null = write OUT/judge_batch/input.jsonl and wait for "
                                    "OUT/judge_batch/output.jsonl; 'vllm' = run vLLM's offline batch runner")
    batch_model_path: str | None = _opt(None, "model dir for the vllm batch runner (null: judge.model)")
    max_model_len: int = _opt(8192, "context length for the vllm batch runner")
    temperature: float = _opt(0.0, "judge sampling temperature")
    max_tokens: int = _opt(2048, "judge max new tokens")
    show_reference: bool = _opt(True, "show the judge the reference answer")
    cache: str | None = _opt("judge_cache.jsonl", "reply cache (relative to OUT, or absolute; null: off)")
    batch_size: int = _opt(256, "solutions per generate() call")
    backend_kwargs: dict = _opt({}, "extra backend arguments (max_concurrency, timeout, max_retries, ...)")


@dataclass
class CombineConfig:
    views: list[str] = _opt(["mc", "soft", "judge", "hybrid", "consensus"], "label views to compute")
    threshold: float = _opt(0.0, "mc views: a step is '+' when its MC ratio is > threshold")
    cut_views: list[str] = _opt(["hybrid", "consensus"], "views whose solutions are cut after the first error")


@dataclass
class ExportConfig:
    view: str = _opt("hybrid", "label view written to OUT/export")
    hf: bool = _opt(True, "also write OUT/export/hf (datasets.save_to_disk)")


@dataclass
class SynthesisConfig:
    out: str = _opt("runs/synthesis", "output directory")
    seed: int = _opt(0, "global seed (every request's seed derives from it and the item id)")
    stages: list[str] = _opt(list(STAGES), "stages to run, comma separated")
    shard: str | None = _opt(None, "i/n: work on shard i of n (writes OUT/shards/i-of-n)")
    retry_failed: bool = _opt(False, "redo items recorded as failed in earlier runs")
    progress: bool = _opt(True, "tqdm progress bars")
    item_delay: float = _opt(0.0, "seconds to sleep after each record written (for kill/resume tests)")
    data: DataConfig = field(default_factory=DataConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    mc: MCConfig = field(default_factory=MCConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    combine: CombineConfig = field(default_factory=CombineConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def validate(self) -> "SynthesisConfig":
        from vlprm.synthesis.combine import VIEWS
        from vlprm.synthesis.mc import METHODS

        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
        if self.mc.method not in METHODS:
            raise ValueError(f"mc.method must be one of {', '.join(METHODS)}, got {self.mc.method!r}")
        for v in list(self.combine.views) + [self.export.view]:
            if v not in VIEWS:
                raise ValueError(f"unknown label view {v!r}; choose from {', '.join(VIEWS)}")
        if self.export.view not in self.combine.views:
            self.combine.views = list(self.combine.views) + [self.export.view]
        if self.judge.mode not in ("online", "batch"):
            raise ValueError(f"judge.mode must be 'online' or 'batch', got {self.judge.mode!r}")
        if self.judge.batch_runner not in (None, "vllm"):
            raise ValueError(f"judge.batch_runner must be null or 'vllm', got {self.judge.batch_runner!r}")
        parse_shard(self.shard)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> SynthesisConfig:
    """A config from a YAML file plus command-line style overrides ("--mc.method", "binary_search"
    or "--mc.method=binary_search"); values are read as YAML ("4" -> 4, "null" -> None)."""
    from vlprm import config

    return config.load_config(SynthesisConfig, path, overrides)


def config_help() -> str:
    """Every config key with its default and meaning (for --help)."""
    from vlprm import config

    return config.config_help(SynthesisConfig)


# --------------------------------------------------------------------------- the run


@dataclass
class StageSummary:
    name: str
    done_before: int = 0
    written: int = 0
    failed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    note: str = ""


class Synthesis:
    """Runs the stages of a `SynthesisConfig`. Generators are created only when a stage has work."""

    def __init__(self, cfg: SynthesisConfig):
        self.cfg = cfg.validate()
        self.shard = parse_shard(cfg.shard)
        out = Path(cfg.out)
        if self.shard[1] > 1:
            out = out / "shards" / f"{self.shard[0]}-of-{self.shard[1]}"
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.summaries: list[StageSummary] = []
        self._policy = None
        self._judge = None
        self.problems: list[Problem] = []

    # -- helpers

    def path(self, stage: str) -> Path:
        return self.out / STAGE_FILES[stage]

    def _delay(self) -> None:
        if self.cfg.item_delay > 0:
            time.sleep(self.cfg.item_delay)

    def _done(self, store: JsonlStore, key: str) -> bool:
        rec = store.get(key)
        if rec is None:
            return False
        return not (self.cfg.retry_failed and rec.get("status") != "ok")

    def policy(self):
        if self._policy is None:
            from vlprm.backends import make_generator

            p = self.cfg.policy
            self._policy = make_generator(p.backend, p.model, **p.backend_kwargs)
        return self._policy

    def judge_generator(self):
        if self._judge is None:
            from vlprm.backends import make_generator

            j = self.cfg.judge
            kw = dict(j.backend_kwargs)
            if j.backend == "openai":
                kw.setdefault("base_url", j.base_url)
                kw.setdefault("api_key_env", j.api_key_env)
            p = self.cfg.policy
            if j.backend == p.backend == "vllm" and j.model == p.model and not kw:
                kw = dict(p.backend_kwargs)  # the same engine serves both
            self._judge = make_generator(j.backend, j.model, **kw)
        return self._judge

    def _chunks(self, items: list, size: int) -> list[list]:
        size = max(1, int(size))
        return [items[i:i + size] for i in range(0, len(items), size)]

    # -- problems

    def load_problems(self) -> list[Problem]:
        """The shard's problems, sorted by id: from the benchmark (written to problems.jsonl),
        or from problems.jsonl when the run does not generate rollouts and the file exists."""
        t0 = time.time()
        path = self.path("problems")
        summ = StageSummary("problems")
        if path.exists() and "rollouts" not in self.cfg.stages:
            problems = [Problem.from_dict(r).resolve_images(self.out) for r in read_jsonl(path)]
            summ.note = f"read from {path}"
        else:
            problems, report = self._load_benchmark()
            summ.failed.update(report.reasons)
            rel = [dataclasses.replace(p, images=[os.path.relpath(i, self.out) for i in p.images]) for p in problems]
            write_jsonl(path, [p.to_dict() for p in rel])
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

                print(f"[synthesis] generating {d.generate_puzzles} puzzles into {root} (seed {d.puzzle_seed})")
                generate_puzzles(root, d.generate_puzzles, d.puzzle_seed, types=d.puzzle_types)
        report = LoadReport(d.benchmark, d.path)
        kw: dict[str, Any] = {"on_error": d.on_error}
        problems = load_benchmark(d.benchmark, d.path, d.split, d.limit, report=report, **kw)
        problems = [p for p in problems if in_shard(p.id, self.shard)]
        return problems, report

    # -- stage 1

    def stage_rollouts(self) -> StageSummary:
        from vlprm.backends import SamplingConfig
        from vlprm.synthesis.rollouts import rollout_records, rollout_request

        p = self.cfg.policy
        summ = StageSummary("rollouts")
        store = JsonlStore(self.path("rollouts"))

        def pending(prob: Problem) -> list[str]:
            return [solution_id(prob.id, i) for i in range(p.n) if not self._done(store, solution_id(prob.id, i))]

        summ.done_before = sum(p.n - len(pending(prob)) for prob in self.problems)
        sampling = SamplingConfig(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens)
        chunks = self._chunks(self.problems, p.batch_problems)
        with tqdm(total=len(self.problems), desc="rollouts", disable=not self.cfg.progress) as bar:
            for chunk in chunks:
                todo = {prob.id: pending(prob) for prob in chunk}
                if not any(todo.values()):
                    bar.update(len(chunk))
                    continue
                gen = self.policy()
                reqs = [rollout_request(prob, style=p.style, seed=self.cfg.seed) for prob in chunk]
                results = gen.generate(reqs, sampling, progress=False, desc="policy")
                for prob, res in zip(chunk, results):
                    want = set(todo[prob.id])
                    for rec in rollout_records(prob, res, p.n, policy=p.model, style=p.style, max_steps=p.max_steps,
                                               seed=self.cfg.seed, drop_truncated=p.drop_truncated):
                        if rec["id"] in want:
                            store.append(rec)
                            summ.written += 1
                            if rec["status"] != "ok":
                                summ.failed[rec["reason"]] += 1
                            self._delay()
                    bar.update(1)
        store.close()
        return summ

    def _solutions(self) -> list[Solution]:
        """Usable solutions of this run's problems, sorted by id."""
        ids = {p.id for p in self.problems}
        last = {r["id"]: r for r in read_jsonl(self.path("rollouts")) if "id" in r}  # last write wins
        ok = [r for r in last.values() if r.get("status") == "ok" and r.get("problem_id") in ids]
        return sorted((Solution.from_dict(r) for r in ok), key=lambda s: s.id)

    # -- stage 2

    def stage_mc(self) -> StageSummary:
        from vlprm.backends import SamplingConfig
        from vlprm.synthesis.mc import Prober, per_step
        from vlprm.synthesis.omegaprm import binary_search

        m, p = self.cfg.mc, self.cfg.policy
        summ = StageSummary("mc", note=f"method {m.method}, K={m.k}")
        store = JsonlStore(self.path("mc"))
        problems = {pr.id: pr for pr in self.problems}
        sols = self._solutions()
        summ.done_before = sum(1 for s in sols if self._done(store, s.id))
        sampling = SamplingConfig(temperature=p.temperature if m.temperature is None else m.temperature,
                                  top_p=p.top_p, max_tokens=p.max_tokens if m.max_tokens is None else m.max_tokens)
        rollouts = 0
        with tqdm(total=len(sols), desc=f"mc ({m.method})", disable=not self.cfg.progress) as bar:
            for chunk in self._chunks(sols, m.batch_solutions):
                want = {s.id for s in chunk if not self._done(store, s.id)}
                if not want:
                    bar.update(len(chunk))
                    continue
                prober = Prober(self.policy(), m.k, sampling, style=p.style, seed=self.cfg.seed, progress=False)
                pairs = [(problems[s.problem_id], s) for s in chunk]
                if m.method == "per_step":
                    results = per_step(pairs, prober, early_stop=m.early_stop,
                                       last_step_from_answer=m.last_step_from_answer)
                else:
                    results = binary_search(pairs, prober, last_step_from_answer=m.last_step_from_answer)
                for res in results:
                    if res.solution_id in want:
                        store.append(res.to_record())
                        summ.written += 1
                        rollouts += res.rollouts
                        if res.status != "ok":
                            summ.failed[res.reason] += 1
                        self._delay()
                bar.update(len(chunk))
        store.close()
        summ.note += f", {rollouts} continuations this run"
        return summ

    # -- stage 3

    def stage_judge(self) -> StageSummary:
        from vlprm.backends import ImageLoadError, SamplingConfig
        from vlprm.synthesis import judge as J

        j = self.cfg.judge
        summ = StageSummary("judge", note=f"{j.backend}:{j.model}, mode {j.mode}")
        store = JsonlStore(self.path("judge"))
        cache_path = None
        if j.cache:
            cache_path = Path(j.cache) if os.path.isabs(j.cache) else self.out / j.cache
        cache = J.ReplyCache(cache_path)
        problems = {pr.id: pr for pr in self.problems}
        sols = self._solutions()
        summ.done_before = sum(1 for s in sols if self._done(store, s.id))
        sampling = SamplingConfig(n=1, temperature=j.temperature, max_tokens=j.max_tokens)
        batch_dir = self.out / "judge_batch"

        def write(rec: dict) -> None:
            store.append(rec)
            summ.written += 1
            if rec["status"] != "ok":
                summ.failed[rec["reason"]] += 1
            self._delay()

        def one_pass(batch_errors: dict[str, str]) -> dict[str, dict]:
            """Record every pending solution whose reply is known; return bodies still to submit."""
            to_submit: dict[str, dict] = {}
            todo = [s for s in sols if not self._done(store, s.id)]
            for chunk in tqdm(self._chunks(todo, j.batch_size), desc="judge", disable=not self.cfg.progress):
                asks: list[tuple[Solution, Any, str]] = []  # (solution, request, key)
                for sol in chunk:
                    prob = problems[sol.problem_id]
                    req = J.judge_request(prob, sol, seed=self.cfg.seed, show_reference=j.show_reference)
                    try:
                        body = J.request_body(j.model, req, sampling)
                    except (ImageLoadError, OSError) as e:
                        write(J.judge_record(prob, sol, model=j.model, key=None, text=None, error=str(e),
                                             error_reason="image_unreadable"))
                        continue
                    key = J.request_key(body)
                    text = cache.get(key)
                    if text is not None:
                        write(J.judge_record(prob, sol, model=j.model, key=key, text=text))
                    elif key in batch_errors:
                        write(J.judge_record(prob, sol, model=j.model, key=key, text=None, error=batch_errors[key],
                                             error_reason="batch_error"))
                    elif j.mode == "batch":
                        to_submit[key] = body
                    else:
                        asks.append((sol, req, key))
                if asks:
                    uniq: dict[str, Any] = {}
                    for _, req, key in asks:
                        uniq.setdefault(key, req)
                    keys = list(uniq)
                    results = self.judge_generator().generate([uniq[k] for k in keys], sampling,
                                                              progress=False, desc="judge")
                    by_key = dict(zip(keys, results))
                    for k, res in by_key.items():
                        if res.ok and res.completions:
                            cache.put(k, res.completions[0].text, j.model)
                    for sol, _, key in asks:
                        res = by_key[key]
                        prob = problems[sol.problem_id]
                        if res.ok and res.completions:
                            write(J.judge_record(prob, sol, model=j.model, key=key, text=res.completions[0].text))
                        else:
                            from vlprm.synthesis.rollouts import classify_error

                            err = res.error or "no completion returned"
                            write(J.judge_record(prob, sol, model=j.model, key=key, text=None, error=err,
                                                 error_reason=classify_error(err)))
            return to_submit

        def ingest(path: Path) -> dict[str, str]:
            errors = {}
            for key, (text, err) in J.read_batch_output(path).items():
                if text is not None:
                    cache.put(key, text, j.model)
                else:
                    errors[key] = err
            return errors

        out_path = batch_dir / "output.jsonl"
        errors = ingest(out_path) if j.mode == "batch" and out_path.exists() else {}
        to_submit = one_pass(errors)
        if to_submit:
            in_path = batch_dir / "input.jsonl"
            J.write_batch_file(in_path, to_submit)
            if j.batch_runner == "vllm":
                print(f"[judge] running vLLM's batch runner on {len(to_submit)} requests ({in_path})")
                run_out = batch_dir / "output.vllm.jsonl"
                J.run_vllm_batch(in_path, run_out, j.batch_model_path or j.model, j.model,
                                 max_model_len=j.max_model_len, log_path=batch_dir / "run_batch.log")
                errors.update(ingest(run_out))
                to_submit = one_pass(errors)
            if to_submit:
                summ.note += (f"; {len(to_submit)} requests wait in {in_path}: submit them to a batch API, save the "
                              f"results as {out_path} and rerun with --stages judge,combine,export")
        cache.close()
        store.close()
        return summ

    # -- stages 4 and 5

    def _records(self, stage: str) -> dict[str, dict]:
        return {r["id"]: r for r in read_jsonl(self.path(stage)) if "id" in r}

    def stage_combine(self) -> StageSummary:
        from vlprm.synthesis.combine import combine

        c = self.cfg.combine
        summ = StageSummary("combine")
        recs = combine(self._solutions(), self._records("mc"), self._records("judge"), c.views,
                       threshold=c.threshold, cut_views=c.cut_views)
        write_jsonl(self.path("combine"), recs)
        summ.written = len(recs)
        summ.failed.update(r["reason"] for r in recs if not r["kept"] and r["view"] == self.cfg.export.view)
        summ.note = f"dropped counts are for the export view {self.cfg.export.view}"
        return summ

    def stage_export(self) -> StageSummary:
        from vlprm.synthesis.export import collect_stats, export_dataset, write_report

        summ = StageSummary("export", note=f"view {self.cfg.export.view}")
        if not self.path("combine").exists():
            raise FileNotFoundError(f"{self.path('combine')} does not exist: run the combine stage first "
                                    "(--stages combine,export)")
        combined = list(read_jsonl(self.path("combine")))
        sols = {s.id: s for s in self._solutions()}
        combined = [r for r in combined if r["solution_id"] in sols]
        problems = {p.id: p for p in self.problems}
        summ.written = export_dataset(self.out / "export", combined, sols, problems, self.cfg.export.view,
                                      hf=self.cfg.export.hf)
        rows = list(read_jsonl(self.out / "export" / "prm.jsonl"))
        ids = {p.id for p in self.problems}
        mine = lambda recs: [r for r in recs if r.get("problem_id") in ids]  # noqa: E731
        st = collect_stats(self.problems, mine(self._records("rollouts").values()), mine(self._records("mc").values()),
                           mine(self._records("judge").values()), combined, self.cfg.export.view, rows)
        self.stats = st
        write_report(self.out, st)
        return summ

    # -- driver

    def run(self) -> list[StageSummary]:
        import yaml

        t_all = time.time()
        (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False), encoding="utf-8")
        self.load_problems()
        for stage in STAGES:
            if stage not in self.cfg.stages:
                continue
            t0 = time.time()
            summ = getattr(self, f"stage_{stage}")()
            summ.seconds = time.time() - t0
            self.summaries.append(summ)
        self.seconds = time.time() - t_all
        self.close()
        return self.summaries

    def close(self) -> None:
        """Close the judge's HTTP client; the policy's vLLM engine stays cached for the process."""
        if self._judge is not None and self._judge is not self._policy:
            self._judge.close()

    def summary_text(self) -> str:
        lines = [f"synthesis summary ({self.out}):"]
        for s in self.summaries:
            fails = ", ".join(f"{k}: {v}" for k, v in s.failed.most_common()) or "none"
            lines.append(f"  {s.name:<9} written {s.written:>6}  already done {s.done_before:>6}  "
                         f"failed [{fails}]  {s.seconds:7.1f} s  {s.note}")
        st = getattr(self, "stats", None)
        if st:
            lines.append(f"  rollouts spent: {st['rollouts']['records']} solutions + {st['mc']['rollouts']} MC "
                         f"continuations; export: {st['export']['rows']} rows ({st['export']['view']}); "
                         f"report: {self.out / 'report.md'}")
        lines.append(f"  total time {getattr(self, 'seconds', 0.0):.1f} s")
        return "\n".join(lines)


def run_synthesis(cfg: SynthesisConfig) -> Synthesis:
    """Run every configured stage; returns the runner (summaries, stats, out dir)."""
    syn = Synthesis(cfg)
    syn.run()
    print(syn.summary_text())
    return syn


# --------------------------------------------------------------------------- shards


def merge_shards(run_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike] | None = None,
                 stages: Sequence[str] = ("combine", "export"), config: str | os.PathLike | None = None) -> Synthesis:
    """Join the shards' stage files by key into run_dir, then run combine + export there.

    inputs default to run_dir/shards/*/; the config is the first shard's config.yaml (or config)
    with out = run_dir and no shard."""
    run_dir = Path(run_dir)
    if inputs:
        shard_dirs = [Path(p) for p in inputs]
    else:
        shard_dirs = sorted(p for p in (run_dir / "shards").glob("*") if p.is_dir())
    if not shard_dirs:
        raise FileNotFoundError(f"no shard directories under {run_dir / 'shards'}; pass them with --inputs")
    for name in ("problems.jsonl", "rollouts.jsonl", "mc.jsonl", "judge.jsonl"):
        files = [d / name for d in shard_dirs if (d / name).exists()]
        if name == "problems.jsonl":
            # Image paths are relative to each shard's dir: make them relative to run_dir.
            recs = []
            for f in files:
                for r in read_jsonl(f):
                    p = Problem.from_dict(r).resolve_images(f.parent)
                    rel = [os.path.relpath(i, run_dir) for i in p.images]
                    recs.append(dataclasses.replace(p, images=rel).to_dict())
            write_jsonl(run_dir / name, sorted({r["id"]: r for r in recs}.values(), key=lambda r: r["id"]))
        elif files:
            merge_jsonl(files, run_dir / name)
    import yaml

    cfg_path = Path(config) if config else shard_dirs[0] / "config.yaml"
    data = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    data.update(out=str(run_dir), shard=None, stages=list(stages))
    from vlprm.config import build_dataclass

    cfg = build_dataclass(SynthesisConfig, data).validate()
    print(f"[merge] {len(shard_dirs)} shards -> {run_dir}")
    return run_synthesis(cfg)


# --------------------------------------------------------------------------- CLI

USAGE = """usage: run.py [--config FILE.yaml] [--section.key VALUE ...]

Turn problems into a PRM training set: rollouts -> mc -> judge -> combine -> export.
Any config key can be overridden on the command line, e.g.
  --mc.method binary_search --policy.n 4 --stages rollouts,mc,combine,export --shard 0/4

config keys:
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE + config_help())
        return 0
    config = None
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] == "--config":
            config = argv[i + 1]
            i += 2
        elif argv[i].startswith("--config="):
            config = argv[i].split("=", 1)[1]
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    try:
        cfg = load_config(config, rest)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_synthesis(cfg)
    return 0
