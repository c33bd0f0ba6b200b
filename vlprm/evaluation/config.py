"""The evaluation run config (one dataclass tree; YAML recipe + command-line overrides)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vlprm.data.store import parse_shard

# Sampling defaults per policy family (what the model cards / papers use).
POLICY_FAMILIES: dict[str, dict] = {
    "qwen2.5-vl": dict(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05),
    "default": dict(temperature=0.7, top_p=1.0, top_k=-1, repetition_penalty=1.0),
}
MODES = ("tts", "processbench")
STAGES = ("sample", "score", "search", "metrics")
SCORERS = ("prm", "evpv")


def policy_family(model: str, family: str = "auto") -> str:
    """The sampling family of a policy: explicit, or guessed from the model name / config."""
    if family != "auto":
        if family not in POLICY_FAMILIES:
            raise ValueError(f"unknown policy family {family!r}; known: {', '.join(POLICY_FAMILIES)}")
        return family
    name = model.lower()
    if "qwen2.5-vl" in name or "qwen2_5_vl" in name:
        return "qwen2.5-vl"
    cfg = Path(model) / "config.json"
    if cfg.is_file():
        try:
            if json.loads(cfg.read_text()).get("model_type") == "qwen2_5_vl":
                return "qwen2.5-vl"
        except json.JSONDecodeError:
            pass
    return "default"


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
class PolicySpec:
    backend: str = field(default="vllm", metadata={"help": "vllm | openai | hf"})
    model: str = field(default="Qwen/Qwen2.5-VL-7B-Instruct", metadata={"help": "dir, hub id or served name"})
    family: str = field(default="auto", metadata={"help": "sampling defaults: qwen2.5-vl | default | auto"})
    style: str = field(default="structured", metadata={"help": "structured | plain"})
    n: int = field(default=8, metadata={"help": "N_max candidates per problem (sampled once)"})
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_tokens: int = 2048
    max_model_len: int = 8192
    gpu_memory_utilization: float | None = None
    base_url: str | None = field(default=None, metadata={"help": "openai backend endpoint"})
    max_steps: int | None = field(default=None, metadata={"help": "cap steps when splitting (PRM input)"})

    def sampling_defaults(self) -> dict:
        d = dict(POLICY_FAMILIES[policy_family(self.model, self.family)])
        for k in ("temperature", "top_p", "top_k", "repetition_penalty"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


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
    strategies: list[str] = field(default_factory=list, metadata={"help": "any of greedy, beam, dvts"})
    n: int = 4
    beam_width: int = 2
    n_subtrees: int = 2
    max_steps: int = 12
    max_step_tokens: int = 512
    aggregation: str = "last"
    final_aggregation: str = "last"
    threshold: float = 0.5


@dataclass
class EvalConfig:
    mode: str = field(default="tts", metadata={"help": "tts (test-time scaling) | processbench (VisualProcessBench F1)"})
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    policy: PolicySpec = field(default_factory=PolicySpec)
    prm: PRMSpec = field(default_factory=PRMSpec)
    scorer: str = field(default="prm", metadata={"help": "prm | evpv (PRM scores gated by visual premise reliability)"})
    evpv: dict = field(default_factory=dict, metadata={"help": "EVPV settings (see docs/EVPV.md)"})
    search: SearchSpec = field(default_factory=SearchSpec)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    output_root: str = "outputs/eval"
    run_name: str | None = field(default=None, metadata={"help": "default: named from the settings"})
    seed: int = 0
    shard: str | None = field(default=None, metadata={"help": "i/n: this process's share of the problems"})
    only_benchmarks: list[str] | None = field(default=None, metadata={"help": "restrict to these benchmark names"})
    plots: bool = True
    sample_chunk: int = field(default=16, metadata={"help": "problems per generate call (a kill loses at most one chunk)"})
    retry_failed: bool = field(default=False, metadata={"help": "sample again problems whose sampling failed "
                                                             "in an earlier run (e.g. HTTP errors)"})

    def validate(self) -> "EvalConfig":
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
        bad = [s for s in self.search.strategies if s not in ("greedy", "beam", "dvts")]
        if bad:
            raise ValueError(f"unknown search strategies {bad}; choose from greedy, beam, dvts")
        if not self.benchmarks:
            raise ValueError("no benchmarks configured: add a `benchmarks:` list (name, path) to the config")
        if self.policy.n < 1:
            raise ValueError("policy.n must be >= 1")
        from vlprm.prm.aggregate import AGGREGATIONS

        bad = [a for a in [*self.prm.aggregations, self.search.aggregation, self.search.final_aggregation]
               if a not in AGGREGATIONS]
        if bad:  # caught now, not when the metrics stage runs after hours of sampling
            raise ValueError(f"unknown aggregation(s) {bad}; choose from {', '.join(AGGREGATIONS)}")
        if self.search.strategies and "outcome" in (self.search.aggregation, self.search.final_aggregation):
            raise ValueError("search.aggregation / search.final_aggregation must be step aggregations, not outcome")
        if (self.search.strategies or self.scorer == "evpv") and not self.prm.model:
            raise ValueError("step search and EVPV need a PRM: set prm.model")
        if self.prm.model:  # a PRM whose settings are unknown is refused now, before any sampling
            from vlprm.prm.settings import resolve_prm_settings

            resolve_prm_settings(self.prm.model, self.prm.settings_overrides())
        parse_shard(self.shard)
        policy_family(self.policy.model, self.policy.family)
        return self

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
                  "sample_chunk", "retry_failed"):
            d.pop(k)
        # Where and how fast things run, not what they compute: a resumed run or a merge job that
        # sets them differently (another GPU, a smaller batch after an OOM) finds the same directory.
        for section, k in (("prm", "batch_size"), ("prm", "device"), ("policy", "gpu_memory_utilization")):
            d[section].pop(k)
        digest = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:6]
        return "_".join(parts + [digest])
