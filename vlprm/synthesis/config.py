"""The synthesis run config: one dataclass tree (YAML recipe + command-line overrides).

The policy section is `vlprm.sampling.PolicyConfig`, the same as evaluation's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vlprm.config import ConfigError
from vlprm.config import option as _opt  # a field with its --help text
from vlprm.data.store import parse_shard
from vlprm.sampling import PolicyConfig

STAGES = ("rollouts", "mc", "judge", "combine", "export")


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
    on_error: str = _opt("skip", "bad benchmark records: 'skip' (listed in OUT/skipped.jsonl) or 'raise'")
    image_cache_dir: str | None = _opt(None, "where embedded images are written (null: $VLPRM_CACHE/images, "
                                       "outside the dataset, so a read-only dataset works)")


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
    shard: str | None = _opt(None, "i/n: work on shard i of n (writes OUT/<stage>.shard<i>of<n>.jsonl; combine and export run when the shards are merged)")
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
            raise ConfigError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
        if self.mc.method not in METHODS:
            raise ConfigError(f"mc.method must be one of {', '.join(METHODS)}, got {self.mc.method!r}")
        for v in list(self.combine.views) + [self.export.view]:
            if v not in VIEWS:
                raise ConfigError(f"unknown label view {v!r}; choose from {', '.join(VIEWS)}")
        if self.export.view not in self.combine.views:
            self.combine.views = list(self.combine.views) + [self.export.view]
        if self.judge.mode not in ("online", "batch"):
            raise ConfigError(f"judge.mode must be 'online' or 'batch', got {self.judge.mode!r}")
        if self.judge.batch_runner not in (None, "vllm"):
            raise ConfigError(f"judge.batch_runner must be null or 'vllm', got {self.judge.batch_runner!r}")
        try:
            parse_shard(self.shard)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.policy.validate()
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
