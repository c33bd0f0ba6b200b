"""EVPV ablations from the command line (the logic is `experiments.evpv.ablations`).

    # Constraint corruption: DROP / FLIP described facts at ratios 0..1; mean reliability and
    # best-of-N accuracy with EVPV-gated scores per (mode, ratio).
    python -m experiments.evpv.cli corruption --problems data/puzzles --candidates synthetic \
        --verifier.backend vllm --verifier.model Qwen/Qwen2.5-VL-7B-Instruct --out out/evpv_corruption

    # Perception intervention: image / image + oracle description / corrupted description, no
    # image / question only; accuracy and what EVPV says about each.
    python -m experiments.evpv.cli intervention --problems data/puzzles --policy.backend vllm \
        --policy.model Qwen/Qwen2.5-VL-3B-Instruct --backend vllm --model Qwen/Qwen2.5-VL-7B-Instruct

    # VisualProcessBench: per-step judge with and without the description.
    python -m experiments.evpv.cli vpb --data OpenGVLab/VisualProcessBench --backend vllm --model M

Settings come from `--config YAML` plus dotted overrides (the library's config loader); the EVPV
scorer's settings are the `evpv:` section (`--evpv.gate threshold`). `--backend/--model` is the
generator every role uses unless the role has its own (`--describer.*`, `--extractor.*`,
`--verifier.*`, `--judge.*`); the verifier backend may be "lexical" (word matching, no model).
Results go to --out as JSON and a text table. `python -m experiments.evpv.cli COMMAND --help`
lists every key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlprm.config import ConfigError
from vlprm.evpv.config import EVPVConfig

log = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """A role's generator; empty: the shared --backend / --model."""

    backend: str | None = field(default=None, metadata={"help": "vllm | openai | hf (verifier: also lexical)"})
    model: str | None = field(default=None, metadata={"help": "local dir, hub id or served name"})


@dataclass
class AblationConfig:
    """What every ablation takes."""

    problems: str | None = field(default=None, metadata={"help": "benchmark path or hub id (see benchmark)"})
    benchmark: str = field(default="puzzles", metadata={"help": "loader name for problems"})
    limit: int | None = field(default=None, metadata={"help": "use the first N items"})
    backend: str | None = field(default=None, metadata={"help": "generator of every EVPV role: vllm | openai | hf"})
    model: str | None = field(default=None, metadata={"help": "model of the shared generator"})
    describer: ModelSpec = field(default_factory=ModelSpec)
    extractor: ModelSpec = field(default_factory=ModelSpec)
    verifier: ModelSpec = field(default_factory=ModelSpec)
    judge: ModelSpec = field(default_factory=ModelSpec)
    base_url: str | None = field(default=None, metadata={"help": "endpoint of the openai backend"})
    max_model_len: int = field(default=4096, metadata={"help": "context length of the vllm backend"})
    evpv: EVPVConfig = field(default_factory=EVPVConfig)
    base: str = field(default="constant", metadata={"help": "base step rewards: constant | precomputed:FILE | prm:DIR"})
    aggregation: str = field(default="min", metadata={"help": "step aggregation: mean | min | last | product"})
    seed: int = field(default=0, metadata={"help": "seed of candidates, corruptions and requests"})
    out: str | None = field(default=None, metadata={"help": "output dir (results JSON, table, EVPV caches)"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


@dataclass
class CorruptionConfig(AblationConfig):
    """DROP / FLIP described facts at increasing ratios."""

    candidates: str = field(default="synthetic", metadata={
        "help": "'synthetic' (hand-made from ground-truth facts) or a Solution JSONL with correct set"})
    n_wrong: int = field(default=3, metadata={"help": "synthetic: wrong candidates per problem"})
    descriptions: str = field(default="oracle", metadata={
        "help": "oracle (from ground-truth perception facts) | describe (the describer's)"})
    modes: list[str] = field(default_factory=lambda: ["drop", "flip"], metadata={"help": "corruption modes"})
    ratios: list[float] = field(default_factory=lambda: [i / 10 for i in range(11)],
                                metadata={"help": "ratios of facts to corrupt"})


@dataclass
class InterventionConfig(AblationConfig):
    """What the policy does with and without the image and the description."""

    policy: ModelSpec = field(default_factory=ModelSpec)
    n: int = field(default=1, metadata={"help": "solutions per problem and condition"})
    temperature: float = field(default=0.7, metadata={"help": "policy sampling temperature"})
    max_tokens: int = field(default=1024, metadata={"help": "policy reply limit"})
    corruption_mode: str = field(default="flip", metadata={"help": "drop | flip"})
    corruption_ratio: float = field(default=0.5, metadata={"help": "share of facts corrupted"})


@dataclass
class VPBConfig(AblationConfig):
    """VisualProcessBench: the step judge with and without the description."""

    data: str | None = field(default=None, metadata={"help": "VisualProcessBench path or hub id"})
    synthetic_from: str | None = field(default=None, metadata={
        "help": "a puzzles dir: VPB-like samples from hand-made candidates (instead of data)"})
    threshold: float = field(default=0.5, metadata={"help": "P(+) below this predicts an incorrect step"})
    max_tokens: int = field(default=1024, metadata={"help": "reply limit of the describer and the judge"})


class Generators:
    """One generator per (backend, model) for the whole run."""

    def __init__(self, cfg: AblationConfig):
        self.cfg = cfg
        self.made: dict[tuple, Any] = {}

    def get(self, spec: ModelSpec | None = None) -> Any:
        backend = (spec.backend if spec else None) or self.cfg.backend
        model = (spec.model if spec else None) or self.cfg.model
        if not backend:
            return None
        if backend == "lexical":
            from experiments.evpv.lexical import LexicalVerifier

            return self.made.setdefault(("lexical",), LexicalVerifier())
        if not model:
            raise ConfigError(f"backend {backend!r} needs a model (--model or the role's .model)")
        if (backend, model) not in self.made:
            from vlprm.backends import make_generator

            kw: dict = {}
            if backend == "vllm":
                kw["max_model_len"] = self.cfg.max_model_len
            if backend == "openai" and self.cfg.base_url:
                kw["base_url"] = self.cfg.base_url
            self.made[(backend, model)] = make_generator(backend, model, **kw)
        return self.made[(backend, model)]

    def close(self) -> None:
        for g in self.made.values():
            close = getattr(g, "close", None)
            if close:
                close()


def _scorer(cfg: AblationConfig, gens: Generators):
    """The EVPV scorer of a run: its caches under OUT/cache unless the evpv section names one."""
    import dataclasses

    from vlprm.evpv.scoring import ConstantScorer, EVPVScorer, PrecomputedScorer

    if cfg.base == "constant":
        base = ConstantScorer(1.0)
    elif cfg.base.startswith("precomputed:"):
        base = PrecomputedScorer.from_jsonl(cfg.base.split(":", 1)[1])
    elif cfg.base.startswith("prm:"):
        from vlprm.prm.scorer import make_scorer

        base = make_scorer("hf", cfg.base.split(":", 1)[1])
    else:
        raise ConfigError(f"base must be constant, precomputed:FILE or prm:DIR, got {cfg.base!r}")
    evpv = dataclasses.replace(cfg.evpv, progress=cfg.evpv.progress and not cfg.quiet,
                               cache_dir=cfg.evpv.cache_dir or (str(Path(cfg.out) / "cache") if cfg.out else None))
    return EVPVScorer(evpv, base, describer=gens.get(cfg.describer), extractor=gens.get(cfg.extractor),
                      verifier=gens.get(cfg.verifier))


def _problems(cfg: AblationConfig):
    from vlprm.data.benchmarks import load_benchmark

    if not cfg.problems:
        raise ConfigError("--problems is required (a benchmark path or hub id)")
    return load_benchmark(cfg.benchmark, cfg.problems, limit=cfg.limit)


def _write(cfg: AblationConfig, name: str, result: dict, table: str) -> None:
    print(table)
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        (out / f"{name}.txt").write_text(table + "\n")
        log.info("results: %s", out / f"{name}.json")


def _candidate_sets(cfg: CorruptionConfig, problems):
    """CandidateSets from hand-made candidates or a Solution JSONL."""
    from experiments.evpv.ablations import CandidateSet, puzzle_candidates
    from vlprm.data.schema import Solution
    from vlprm.data.store import read_jsonl
    from vlprm.prm.scorer import build_prm_sample

    sets, skipped = [], 0
    if cfg.candidates == "synthetic":
        for p in problems:
            cs = puzzle_candidates(p, cfg.n_wrong, cfg.seed)
            if cs is None:
                skipped += 1
            else:
                sets.append(cs)
    else:
        by_pid: dict[str, list] = {}
        for r in read_jsonl(cfg.candidates, strict=True):
            s = Solution.from_dict(r)
            by_pid.setdefault(s.problem_id, []).append(s)
        for p in problems:
            sols = [s for s in by_pid.get(p.id, []) if s.correct is not None and s.steps]
            if not sols:
                skipped += 1
                continue
            sets.append(CandidateSet(problem_id=p.id, samples=[build_prm_sample(p, s.steps, id=s.id) for s in sols],
                                     correct=[bool(s.correct) for s in sols], description=None, base_scores=None))
    if cfg.candidates != "synthetic" and cfg.base == "constant":
        for cs in sets:
            cs.base_scores = [[1.0] * len(s.steps) for s in cs.samples]
    elif cfg.candidates == "synthetic" and cfg.base != "constant":
        for cs in sets:
            cs.base_scores = None  # score the hand-made candidates with the given base scorer
    return sets, skipped


def run_corruption(cfg: CorruptionConfig, gens: Generators) -> dict:
    from experiments.evpv.ablations import corruption_sweep, format_table, oracle_description

    t0 = time.time()
    problems = _problems(cfg)
    scorer = _scorer(cfg, gens)
    sets, skipped = _candidate_sets(cfg, problems)
    by_id = {p.id: p for p in problems}
    if cfg.descriptions == "oracle":
        for cs in sets:
            cs.description = oracle_description(by_id[cs.problem_id])
    else:
        for cs, d in zip(sets, scorer.describe([cs.samples[0] for cs in sets])):
            cs.description = d.description if d.ok else None
    kept = [cs for cs in sets if cs.description is not None]
    no_desc = len(sets) - len(kept)
    if not kept:
        raise ConfigError(f"no problem has candidates and a description ({skipped} without candidates, "
                          f"{no_desc} without a readable description)")
    rows = corruption_sweep(kept, scorer, modes=cfg.modes, ratios=cfg.ratios, seed=cfg.seed,
                            aggregation=cfg.aggregation)
    table = format_table(rows, ["mode", "ratio", "mean_reliability", "bon_accuracy", "base_bon_accuracy",
                                "facts_changed", "facts_total", "fallback_steps"])
    table += (f"\n{scorer.summary_line()}\nproblems {len(kept)} (skipped: {skipped} without candidates, "
              f"{no_desc} without a description)")
    result = {"rows": rows, "summary": {"problems": len(kept), "skipped_no_candidates": skipped,
                                        "skipped_no_description": no_desc, "evpv": scorer.summary(),
                                        "seconds": round(time.time() - t0, 1)}}
    _write(cfg, "corruption", result, table)
    scorer.close()
    return result


def run_intervention(cfg: InterventionConfig, gens: Generators) -> dict:
    from experiments.evpv.ablations import format_table, perception_intervention
    from vlprm.backends.base import SamplingConfig

    t0 = time.time()
    problems = _problems(cfg)
    if not (cfg.policy.backend and cfg.policy.model):
        raise ConfigError("intervention needs --policy.backend and --policy.model")
    policy = gens.get(cfg.policy)
    scorer = _scorer(cfg, gens)
    res = perception_intervention(problems, policy, scorer, n=cfg.n,
                                  sampling=SamplingConfig(temperature=cfg.temperature, max_tokens=cfg.max_tokens),
                                  corruption=(cfg.corruption_mode, cfg.corruption_ratio), seed=cfg.seed,
                                  aggregation=cfg.aggregation)
    table = format_table(res["rows"], ["condition", "solutions", "accuracy", "no_answer", "mean_reliability",
                                       "mean_score", "fallback_steps", "failed", "skipped"])
    table += f"\n{scorer.summary_line()}"
    res["summary"] = {"evpv": scorer.summary(), "seconds": round(time.time() - t0, 1)}
    _write(cfg, "intervention", res, table)
    scorer.close()
    return res


def run_vpb(cfg: VPBConfig, gens: Generators) -> dict:
    from experiments.evpv.ablations import format_table, puzzle_process_bench, visual_process_bench

    t0 = time.time()
    if bool(cfg.data) == bool(cfg.synthetic_from):
        raise ConfigError("vpb needs exactly one of --data and --synthetic_from")
    if cfg.synthetic_from:
        from vlprm.data.benchmarks import load_puzzles

        samples = puzzle_process_bench(load_puzzles(cfg.synthetic_from, limit=cfg.limit), seed=cfg.seed)
    else:
        from vlprm.data.benchmarks import load_benchmark

        samples = load_benchmark("visualprocessbench", cfg.data, limit=cfg.limit)
    judge = gens.get(cfg.judge)
    if judge is None:
        raise ConfigError("vpb needs a judge (--backend/--model or --judge.backend/--judge.model)")
    res = visual_process_bench(samples, judge, describer=gens.get(cfg.describer), threshold=cfg.threshold,
                               cache_dir=str(Path(cfg.out) / "cache") if cfg.out else None, seed=cfg.seed,
                               max_tokens=cfg.max_tokens, progress=not cfg.quiet)
    rows = []
    for cond, m in res["metrics"].items():
        o = (m or {}).get("overall", {})
        rows.append({"condition": cond, "f1_correct": o.get("f1_correct"), "f1_incorrect": o.get("f1_incorrect"),
                     "macro_f1": o.get("macro_f1"), "steps": o.get("n_steps"),
                     "fallback_steps": res["counts"][cond].get("fallback_steps", 0),
                     "unreadable": res["counts"][cond].get("unreadable", 0)})
    table = format_table(rows, ["condition", "f1_correct", "f1_incorrect", "macro_f1", "steps", "fallback_steps",
                                "unreadable"])
    table += f"\nsamples {len(samples)}, descriptions unreadable: {res['counts'].get('description_unreadable', 0)}"
    res["summary"] = {"rows": rows, "seconds": round(time.time() - t0, 1)}
    _write(cfg, "vpb", res, table)
    return res


COMMANDS = {"corruption": (CorruptionConfig, run_corruption), "intervention": (InterventionConfig, run_intervention),
            "vpb": (VPBConfig, run_vpb)}
USAGE = __doc__


def _runner(fn):
    """fn(cfg, generators) with the generators made for this run and closed after it."""
    def run(cfg):
        gens = Generators(cfg)
        try:
            return fn(cfg, gens)
        finally:
            gens.close()
    return run


def run(argv: Sequence[str]) -> dict:
    """Run one ablation from command-line style arguments (COMMAND [--config YAML] [--key value ...])
    and return its result."""
    from vlprm.config import load_config
    from vlprm.runs import bare_flags, split_config_arg

    if not argv or argv[0] not in COMMANDS:
        raise ConfigError(f"the first argument is the ablation: {' | '.join(COMMANDS)}")
    cls, fn = COMMANDS[argv[0]]
    path, rest = split_config_arg(argv[1:])
    return _runner(fn)(load_config(cls, path, bare_flags(cls, rest)))


def main(argv: Sequence[str] | None = None) -> int:
    from vlprm.runs import cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(USAGE.rstrip() + f"\n\nerror: the first argument is the ablation: {' | '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    cls, fn = COMMANDS[argv[0]]
    return cli_main(cls, argv[1:], _runner(fn), USAGE)


if __name__ == "__main__":
    sys.exit(main())
