"""What every PRM scorer shares: the `StepScores` record, the `Scorer` protocol, the scoring
modes, and the helpers that build the samples a scorer reads (see `vlprm.prm.scorer`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from vlprm.prm.format import PRMSample
from vlprm.prm.settings import PRMSettings, resolve_prm_settings

MODES = ("one_pass", "per_step", "outcome")
OUTCOME_JOINER = "\n\n"


@dataclass
class StepScores:
    """The PRM's verdict on one sample: P(+) per step (None when it could not be scored)."""

    p_plus: list[float] | None
    num_tokens: int = 0
    error: str | None = None
    id: str | None = None
    mode: str = "one_pass"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.p_plus is not None

    def to_dict(self) -> dict:
        return {"id": self.id, "p_plus": self.p_plus, "num_tokens": self.num_tokens,
                "error": self.error, "mode": self.mode, "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "StepScores":
        return cls(p_plus=d.get("p_plus"), num_tokens=d.get("num_tokens", 0), error=d.get("error"),
                   id=d.get("id"), mode=d.get("mode", "one_pass"), extra=d.get("extra") or {})


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores PRM samples step by step (the PRM scorers here, EVPV, test stubs)."""

    def score(self, samples: Sequence[PRMSample]) -> list[StepScores]:
        """One StepScores per sample, in order; failures are reported in StepScores.error."""
        ...


def scorer_settings(model: str | os.PathLike, settings: PRMSettings | str | os.PathLike | None, **overrides,
                    ) -> PRMSettings:
    """The settings a scorer uses: a PRMSettings as given, else `resolve_prm_settings` with
    `settings` (a record file/dir) and the explicit overrides (system_prompt, step_suffix, pixels)."""
    if isinstance(settings, PRMSettings):
        return settings
    return resolve_prm_settings(model, {**overrides, "settings": settings})


def build_prm_sample(problem: Any, steps: Sequence[Any], id: str | None = None) -> PRMSample:
    """A PRM sample for a solution of `problem`: the question with its options block (the text
    the policy saw, without the answer-format instructions), the step texts and the images."""
    from vlprm.prompts import question_with_options

    texts = [s.text if hasattr(s, "text") else str(s) for s in steps]
    return PRMSample(question=question_with_options(problem), steps=texts,
                     images=list(problem.images), id=id)


def unlabelled(sample: PRMSample, n_steps: int | None = None) -> PRMSample:
    """The sample without labels (every label turn gets the "+" placeholder), optionally cut to
    its first n_steps steps. Scoring never shows the PRM gold labels of earlier steps."""
    steps = sample.steps if n_steps is None else sample.steps[:n_steps]
    return PRMSample(question=sample.question, steps=list(steps), images=list(sample.images), id=sample.id)


def outcome_sample(sample: PRMSample) -> PRMSample:
    """The whole solution as one step (for scoring the PRM as an outcome reward model)."""
    return PRMSample(question=sample.question, steps=[OUTCOME_JOINER.join(sample.steps)],
                     images=sample.images, id=sample.id)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"scorer mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode
