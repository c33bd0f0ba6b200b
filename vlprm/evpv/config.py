"""`EVPVConfig`: the typed settings of an EVPV scorer (the `evpv:` section of an eval config).

Built by `vlprm.config.build_dataclass` like every other section, so an unknown key, a wrong
type or a bad value is a `ConfigError` when the config is loaded, before any sampling.
`config_help(EVPVConfig)` lists every key with its default and meaning.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from vlprm.config import ConfigError, build_dataclass
from vlprm.evpv.gate import GATES, GateConfig
from vlprm.evpv.verify import ReliabilityWeights, SeverityWeights

CHECKLIST_SOURCES = ("auto", "policy", "extractor")
CHECKLIST_FALLBACKS = ("none", "step_text")
GRANULARITIES = ("solution", "step")
ROLES = ("describer", "extractor", "verifier")



def _role_field(role: str):
    return field(default=None, metadata={
        "help": f"{role}: {{backend: vllm|openai|hf, model: ..., **backend arguments}}; null: the generator "
                "passed to build_evpv_scorer (in evaluation: the policy engine)"})


@dataclass
class EVPVConfig:
    """Settings of an EVPV scorer (YAML keys are the field names; see docs/EVPV.md)."""

    gate: str = field(default="multiply", metadata={"help": f"how reliability scales a reward: {' | '.join(GATES)}"})
    alpha: float = field(default=1.0, metadata={"help": "multiply gate: p * r ** alpha"})
    tau: float = field(default=0.5, metadata={"help": "threshold gate: keep p when r >= tau"})
    low: float = field(default=0.0, metadata={"help": "threshold gate: p * low when r < tau"})
    temperature: float = field(default=0.1, metadata={"help": "softmin gate temperature"})
    propagate: bool = field(default=False, metadata={"help": "later steps inherit the lowest reliability so far"})
    weights: SeverityWeights = field(default_factory=SeverityWeights,
                                     metadata={"help": "penalty of a contradiction per severity, and of an "
                                                       "unverifiable premise"})
    unknown_severity: str = field(default="major",
                                  metadata={"help": "severity of a contradiction without a readable one"})
    fallback_reliability: float = field(default=1.0, metadata={
        "help": "reliability of visual steps whose description or verification is unreadable"})
    checklist: str = field(default="auto", metadata={
        "help": "visual premises from: policy ([visual: ...] tags) | extractor (a model) | auto (tags if any)"})
    checklist_fallback: str = field(default="none", metadata={
        "help": "premises of a step when the checklist is unreadable: none | step_text"})
    verify_granularity: str = field(default="solution", metadata={
        "help": "one verifier call per solution | per visually dependent step"})
    verify_with_image: bool = field(default=False, metadata={"help": "also show the verifier the image"})
    describer: dict | None = _role_field("describer")
    extractor: dict | None = _role_field("extractor")
    verifier: dict | None = _role_field("verifier")
    sampling_temperature: float = field(default=0.0, metadata={"help": "sampling temperature of the three roles"})
    max_tokens_describe: int = field(default=1024, metadata={"help": "describer reply limit (tokens)"})
    max_tokens_extract: int = field(default=512, metadata={"help": "extractor reply limit (tokens)"})
    max_tokens_verify: int = field(default=1024, metadata={"help": "verifier reply limit (tokens)"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "stage caches (descriptions/checklists/verify.jsonl); null: in memory (eval: the run dir)"})
    retry_failed: bool = field(default=False, metadata={
        "help": "ask again for cached replies that were unreadable or whose request failed"})
    seed: int = field(default=0, metadata={"help": "seed of the request seeds"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})

    def __post_init__(self):
        if isinstance(self.weights, Mapping):  # EVPVConfig(weights={"minor": 0.1}) from Python
            self.weights = build_dataclass(SeverityWeights, dict(self.weights), "evpv.weights.")
        for name, allowed in (("gate", GATES), ("checklist", CHECKLIST_SOURCES),
                              ("checklist_fallback", CHECKLIST_FALLBACKS), ("verify_granularity", GRANULARITIES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"evpv.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.fallback_reliability <= 1.0:
            raise ConfigError(f"evpv.fallback_reliability must be in [0, 1], got {self.fallback_reliability}")
        for role in ROLES:
            check_role(role, getattr(self, role))
        try:
            self.reliability_weights()
            self.gate_config()
        except ValueError as e:
            raise ConfigError(f"evpv: {e}") from e

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "EVPVConfig":
        """From a mapping of field names (nested `weights` may be partial); unknown keys are errors."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown EVPV config key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return build_dataclass(cls, d, "evpv.")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "EVPVConfig":
        """From a YAML file with the keys at the top level or under `evpv:`."""
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data.get("evpv", data))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def gate_config(self) -> GateConfig:
        return GateConfig(kind=self.gate, alpha=self.alpha, tau=self.tau, low=self.low,
                          temperature=self.temperature, propagate=self.propagate)

    def reliability_weights(self) -> ReliabilityWeights:
        return ReliabilityWeights(unknown_severity=self.unknown_severity, **dataclasses.asdict(self.weights))


def check_role(role: str, spec: Mapping[str, Any] | None) -> None:
    """A role's {backend, model, ...} must name a known backend and a model (ConfigError if not)."""
    if not spec:
        return
    from vlprm.backends import BACKENDS, check_backend_kwargs

    if not isinstance(spec, Mapping) or not spec.get("backend") or not spec.get("model"):
        raise ConfigError(f"evpv.{role} needs 'backend' and 'model' (got {spec!r}), or null for the shared generator")
    if spec["backend"] not in BACKENDS:
        raise ConfigError(f"evpv.{role}.backend must be one of {', '.join(BACKENDS)}, got {spec['backend']!r}")
    check_backend_kwargs(spec["backend"], {k: v for k, v in spec.items() if k not in ("backend", "model")},
                         f"evpv.{role}")


def make_role_generator(spec: Mapping[str, Any] | None, shared):
    """The generator of one EVPV role from its config ({"backend", "model", **kwargs}) or the shared one."""
    if not spec:
        return shared
    from vlprm.backends import make_generator

    kwargs = {k: v for k, v in spec.items() if k not in ("backend", "model")}
    return make_generator(spec["backend"], spec["model"], **kwargs)
