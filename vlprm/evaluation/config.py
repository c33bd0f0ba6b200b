"""The evaluation run config (one dataclass tree; YAML recipe + command-line overrides).

The policy section is `vlprm.sampling.PolicyConfig` (the same as synthesis's), the EVPV section
`vlprm.evpv.config.EVPVConfig`; `--help` lists every key of both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vlprm.config import ConfigError
from vlprm.data.store import parse_shard
from vlprm.evpv.config import EVPVConfig
from vlprm.sampling import PolicyConfig

MODES = ("tts", "processbench")
STAGES = ("sample", "score", "search", "metrics")
SCORERS = ("prm", "evpv")


@dataclass
class BenchmarkSpec:
    name: str = "puzzles"
    path: str = ""
    split: str | None = None
    limit: int | None = None
    first_n_per_type: int | None = None  # PuzzleVQA / AlgoPuzzleVQA: the common first-50 subset

    @property
    def key(self) -> str:
        return self.name if not self.split else f"{self.name}-{self.split}"


@dataclass
class PRMSpec:
    model: str = field(default="", metadata={"help": "PRM dir or hub id; empty = no PRM (pass@k, maj@k only)"})
    backend: str = field(default="hf", metadata={"help": "hf | vllm"})
    # The PRM's scoring settings come from its record (vlprm_prm.json); these override it. A PRM
    # without a record needs settings, or system_prompt and step_suffix (vlprm.prm.settings).
    settings: str | None = field(default=None, metadata={"help": "a PRM settings record (.json) to use instead of "
                                                                  "the PRM's own vlprm_prm.json"})
    system_prompt: str | None = field(default="auto", metadata={"help": "auto (the PRM's record) | variant | file:PATH | text"})
    step_suffix: str | None = field(default=None, metadata={"help": "text after every step: '' or '\\n\\n' "
                                                                     "(default: the PRM's record)"})
    batch_size: int = 8
    device: str | None = field(default=None, metadata={"help": "default: cuda:1 when there are 2+ GPUs, else cuda:0/cpu"})
    outcome: bool = field(default=False, metadata={"help": "also score each solution as one step (PRM as ORM)"})
    aggregations: list[str] = field(default_factory=lambda: ["mean", "min", "last", "product", "vlprm"])
    min_pixels: int | None = field(default=None, metadata={"help": "default: the PRM's record"})
    max_pixels: int | None = field(default=None, metadata={"help": "default: the PRM's record"})
    threshold: float = field(default=0.5, metadata={"help": "processbench mode: P(+) >= threshold is 'correct'"})

    def settings_overrides(self) -> dict:
        """The settings given explicitly (for `vlprm.prm.settings.resolve_prm_settings` / make_scorer)."""
        return {k: getattr(self, k) for k in ("settings", "system_prompt", "step_suffix", "min_pixels", "max_pixels")}


@dataclass
class SearchSpec:
    """Step-level search settings (sampling comes from the policy section)."""

    strategies: list[str] = field(default_factory=list, metadata={"help": "any of greedy, beam, dvts"})
    n: int = field(default=4, metadata={"help": "candidate next steps per iteration (beam: per kept beam)"})
    beam_width: int = field(default=2, metadata={"help": "beam: partial solutions kept per iteration"})
    n_subtrees: int = field(default=2, metadata={"help": "dvts: independent subtrees"})
    max_steps: int = field(default=12, metadata={"help": "steps before a search stops"})
    max_step_tokens: int = field(default=512, metadata={"help": "max new tokens per step"})
    aggregation: str = field(default="last", metadata={"help": "how partial solutions are ranked"})
    final_aggregation: str = field(default="last", metadata={"help": "how the returned solution is picked"})
    threshold: float = field(default=0.5, metadata={"help": "P(+) below it: the PRM judges the step wrong"})
    choice: str = field(default="max_score", metadata={"help": "greedy / dvts step choice: max_score | vlprm_rule "
                                                                 "(the VL-PRM authors' P(+)^0.3 / tokens^0.6 rule)"})

    def search_config(self, strategy: str, policy: PolicyConfig, seed: int):
        """The `vlprm.search.SearchConfig` of one strategy: every search key of this section (same
        names), the policy's sampling and style."""
        from vlprm.search import SearchConfig

        keys = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "strategies"}
        return SearchConfig(strategy=strategy, style=policy.style, seed=seed, **keys, **policy.sampling_defaults())


@dataclass
class EvalConfig:
    mode: str = field(default="tts", metadata={"help": "tts (test-time scaling) | processbench (VisualProcessBench F1)"})
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    prm: PRMSpec = field(default_factory=PRMSpec)
    scorer: str = field(default="prm", metadata={"help": "prm | evpv (PRM scores gated by visual premise reliability)"})
    evpv: EVPVConfig = field(default_factory=EVPVConfig)
    search: SearchSpec = field(default_factory=SearchSpec)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    output_root: str = "outputs/eval"
    run_name: str | None = field(default=None, metadata={"help": "default: named from the settings"})
    seed: int = 0
    shard: str | None = field(default=None, metadata={"help": "i/n: this process's share of the problems"})
    only_benchmarks: list[str] | None = field(default=None, metadata={"help": "restrict to these benchmark names"})
    plots: bool = True
    image_cache_dir: str | None = field(default=None, metadata={"help": "where loaders write embedded images "
                                                                "(null: $VLPRM_CACHE/images, outside the dataset)"})
    retry_failed: bool = field(default=False, metadata={"help": "sample again problems whose sampling failed "
                                                             "in an earlier run (e.g. HTTP errors)"})

    def validate(self) -> "EvalConfig":
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.scorer not in SCORERS:
            raise ConfigError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ConfigError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
        bad = [s for s in self.search.strategies if s not in ("greedy", "beam", "dvts")]
        if bad:
            raise ConfigError(f"unknown search strategies {bad}; choose from greedy, beam, dvts")
        from vlprm.search.base import CHOICES

        if self.search.choice not in CHOICES:
            raise ConfigError(f"search.choice: expected one of {', '.join(CHOICES)}, got {self.search.choice!r}")
        if not self.benchmarks:
            raise ConfigError("no benchmarks configured: add a `benchmarks:` list (name, path) to the config")
        if self.mode != "processbench" and any(b.name == "visualprocessbench" for b in self.benchmarks):
            raise ConfigError("visualprocessbench is evaluated with mode: processbench")
        self.policy.validate()
        from vlprm.prm.aggregate import AGGREGATIONS

        bad = [a for a in [*self.prm.aggregations, self.search.aggregation, self.search.final_aggregation]
               if a not in AGGREGATIONS]
        if bad:  # caught now, not when the metrics stage runs after hours of sampling
            raise ConfigError(f"unknown aggregation(s) {bad}; choose from {', '.join(AGGREGATIONS)}")
        if self.search.strategies and "outcome" in (self.search.aggregation, self.search.final_aggregation):
            raise ConfigError("search.aggregation / search.final_aggregation must be step aggregations, not outcome")
        if (self.search.strategies or self.scorer == "evpv") and not self.prm.model:
            raise ConfigError("step search and EVPV need a PRM: set prm.model")
        if self.prm.model:  # a PRM whose settings are unknown is refused now, before any sampling
            from vlprm.prm.settings import resolve_prm_settings

            resolve_prm_settings(self.prm.model, self.prm.settings_overrides())
        try:
            parse_shard(self.shard)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return self

    def tag(self) -> str:
        """The suffix of this job's files (its benchmarks and shard; `vlprm.runs.shard_tag`)."""
        from vlprm.runs import shard_tag

        return shard_tag(self.shard, self.only_benchmarks)

    def name(self) -> str:
        """A run name that says what it is: policy, PRM, N, temperature, seed (+ a short hash
        of the remaining settings so different runs never share a directory)."""
        if self.run_name:
            return self.run_name

        def short(m: str) -> str:
            return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(m.rstrip("/")).name or m)[:40] or "none"

        s = self.policy.sampling_defaults()
        parts = [self.mode, f"policy-{short(self.policy.model)}", f"prm-{short(self.prm.model) if self.prm.model else 'none'}"]
        if self.scorer != "prm":
            parts.append(self.scorer)
        parts += [f"N{self.policy.n}", f"T{s['temperature']}", f"seed{self.seed}"]
        d = dataclasses.asdict(self)
        # Search settings stay out: adding a strategy to a run reuses its candidates and scores
        # (search result files are named by their own hyper-parameters).
        for k in ("stages", "output_root", "run_name", "shard", "only_benchmarks", "plots", "search",
                  "image_cache_dir", "retry_failed"):
            d.pop(k)
        # Where and how fast things run, not what they compute: a resumed run or a merge job that
        # sets them differently (another GPU, a smaller batch after an OOM) finds the same directory.
        for section, k in (("prm", "batch_size"), ("prm", "device"), ("policy", "gpu_memory_utilization"),
                           ("policy", "batch_problems"), ("policy", "drop_truncated"), ("policy", "api_key_env"),
                           ("evpv", "cache_dir"), ("evpv", "progress")):
            d[section].pop(k)
        digest = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]
        return "_".join(parts + [digest])
