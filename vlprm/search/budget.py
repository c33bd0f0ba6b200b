"""Compute spent by a test-time strategy, so strategies can be compared at equal compute.

Counted per problem by every strategy (and by best-of-N sampling + scoring, through the same
`add_generation` / `add_prm` calls), never estimated afterwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass
class Budget:
    """Tokens and calls spent on one problem.

    policy_prompt_tokens: prompt tokens of every policy request (a request's n samples share
        one prompt, counted once; 0 where the backend does not report it).
    policy_generated_tokens: tokens of every sampled completion.
    prm_tokens: PRM input tokens read (`StepScores.num_tokens`, summed).
    policy_calls / prm_calls: rounds, i.e. `Generator.generate` / `Scorer.score` invocations that
        included this problem (the sequential depth of the strategy).
    policy_requests / policy_completions / prm_samples: requests sent, completions received,
        conversations scored.
    """

    policy_prompt_tokens: int = 0
    policy_generated_tokens: int = 0
    prm_tokens: int = 0
    policy_calls: int = 0
    prm_calls: int = 0
    policy_requests: int = 0
    policy_completions: int = 0
    prm_samples: int = 0

    @property
    def policy_tokens(self) -> int:
        return self.policy_prompt_tokens + self.policy_generated_tokens

    @property
    def total_tokens(self) -> int:
        """Policy prompt + generated + PRM tokens: one number to compare strategies by."""
        return self.policy_tokens + self.prm_tokens

    def add_generation(self, result: Any) -> None:
        """Count one request's `GenerationResult` (a failed request counts as a request only)."""
        self.policy_requests += 1
        if getattr(result, "error", None):
            return
        self.policy_prompt_tokens += int(result.prompt_tokens or 0)
        self.policy_completions += len(result.completions)
        self.policy_generated_tokens += sum(int(c.num_tokens or 0) for c in result.completions)

    def add_prm(self, scores: Any) -> None:
        """Count one scored sample (`StepScores`); a failed one still counts what it read."""
        self.prm_samples += 1
        self.prm_tokens += int(getattr(scores, "num_tokens", 0) or 0)

    def __add__(self, other: "Budget") -> "Budget":
        return Budget(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                         for f in dataclasses.fields(self)})

    @classmethod
    def sum(cls, budgets: Iterable["Budget"]) -> "Budget":
        total = cls()
        for b in budgets:
            total = total + b
        return total

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["total_tokens"] = self.total_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Budget":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


__all__ = ["Budget"]
