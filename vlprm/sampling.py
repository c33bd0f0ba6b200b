"""The policy section of every run: one config (sampling + backend), one way to sample.

Synthesis (rollouts, MC continuations) and evaluation (candidates, step search) sample the same
policy with the same settings: unset sampling keys take the defaults of the model's family
(what its model card uses), in both pipelines.

    policy = PolicyConfig(model="Qwen/Qwen2.5-VL-7B-Instruct", n=8)
    results = generator.generate([rollout_request(p, style=policy.style, seed=seed) for p in probs],
                                 policy.sampling())
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vlprm.backends.base import ChatRequest, SamplingConfig
from vlprm.config import ConfigError
from vlprm.config import option as _opt  # a field with its --help text
from vlprm.answers import check_answer, extract_answer
from vlprm.data.schema import Problem, Solution, solution_id
from vlprm.data.store import stable_seed
from vlprm.prompts import build_policy_messages
from vlprm.steps import split_steps

# Sampling defaults per policy family (what the model cards / papers use).
POLICY_FAMILIES: dict[str, dict] = {
    "qwen2.5-vl": dict(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05),
    "default": dict(temperature=0.7, top_p=1.0, top_k=-1, repetition_penalty=1.0),
}
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")
STYLES = ("structured", "plain")


def policy_family(model: str, family: str = "auto") -> str:
    """The sampling family of a policy: explicit, or guessed from the model name / config."""
    if family != "auto":
        if family not in POLICY_FAMILIES:
            raise ConfigError(f"policy.family: unknown family {family!r}; known: auto, {', '.join(POLICY_FAMILIES)}")
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
class PolicyConfig:
    """The policy: which model on which backend, and how it samples."""

    backend: str = _opt("vllm", "policy backend: vllm | openai | hf")
    model: str = _opt("Qwen/Qwen2.5-VL-7B-Instruct", "policy model (local dir, hub id or served name)")
    family: str = _opt("auto", "sampling defaults: qwen2.5-vl | default | auto (from the model name / config)")
    style: str = _opt("structured", "solution format: structured (perception then reasoning) | plain")
    n: int = _opt(8, "solutions per problem (one request with n=N; evaluation: N_max, sampled once)")
    temperature: float | None = _opt(None, "sampling temperature (null: the family's)")
    top_p: float | None = _opt(None, "nucleus sampling (null: the family's)")
    top_k: int | None = _opt(None, "top-k sampling (null: the family's)")
    repetition_penalty: float | None = _opt(None, "repetition penalty (null: the family's)")
    max_tokens: int = _opt(2048, "max new tokens per solution")
    max_steps: int | None = _opt(12, "cap steps per solution by merging adjacent ones (null: no cap)")
    drop_truncated: bool = _opt(True, "synthesis: record solutions cut at max_tokens as failed ('truncated')")
    batch_problems: int = _opt(16, "problems per generate() call (the resume unit: a kill loses at most one)")
    max_model_len: int | None = _opt(None, "vllm: context length (null: the backend's default, 8192)")
    gpu_memory_utilization: float | None = _opt(None, "vllm: fraction of GPU memory for the engine")
    base_url: str | None = _opt(None, "openai: the endpoint (null: $OPENAI_BASE_URL or OpenAI's)")
    api_key_env: str = _opt("OPENAI_API_KEY", "openai: environment variable holding the API key")
    backend_kwargs: dict = _opt({}, "extra backend arguments (vLLM engine args; max_concurrency etc. for openai)")

    def sampling_defaults(self) -> dict:
        """temperature, top_p, top_k, repetition_penalty: set ones, else the family's."""
        d = dict(POLICY_FAMILIES[policy_family(self.model, self.family)])
        for k in SAMPLING_KEYS:
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    def sampling(self, n: int | None = None, **override) -> SamplingConfig:
        """The policy's SamplingConfig (n defaults to policy.n); `override` replaces keys whose
        value is not None (e.g. MC's own temperature)."""
        kw = {**self.sampling_defaults(), "n": self.n if n is None else n, "max_tokens": self.max_tokens}
        kw.update({k: v for k, v in override.items() if v is not None})
        return SamplingConfig(**kw)

    def validate(self) -> "PolicyConfig":
        policy_family(self.model, self.family)
        if self.n < 1:
            raise ConfigError(f"policy.n must be >= 1, got {self.n}")
        if self.style not in STYLES:
            raise ConfigError(f"policy.style must be one of {', '.join(STYLES)}, got {self.style!r}")
        return self


def rollout_request(problem: Problem, *, style: str = "structured", seed: int = 0) -> ChatRequest:
    """The policy request of a problem (its n comes from the sampling config); its seed derives
    from (global seed, problem id), so a resumed or sharded run samples the same solutions."""
    return ChatRequest(messages=build_policy_messages(problem, style), seed=stable_seed(seed, problem.id),
                       id=problem.id)


def parse_solution(problem: Problem, index: int, text: str, *, policy: str, style: str = "structured",
                   max_steps: int | None = None, seed: int | None = None, finish_reason: str | None = None,
                   num_tokens: int | None = None) -> Solution:
    """A policy output as a `Solution`: steps, final answer, correctness."""
    steps = split_steps(text, style, max_steps=max_steps)
    answer = extract_answer(text, options=problem.options, answer_type=problem.answer_type)
    correct = answer is not None and check_answer(answer, problem, extract=False)
    return Solution(id=solution_id(problem.id, index), problem_id=problem.id, policy=policy, text=text,
                    steps=steps, final_answer=answer, correct=correct, seed=seed,
                    metadata={"index": index, "finish_reason": finish_reason, "num_tokens": num_tokens})
