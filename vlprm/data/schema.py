"""The records every stage reads and writes.

A `Problem` is an image question; a `Solution` is one policy answer to it, split into
`Step`s. Each step keeps its raw label *evidence* (MC counts, judge verdict, ...); labels
(hard, soft, judge, hybrid, consensus) are views computed from evidence in
`vlprm.synthesis.combine`, so a new labelling rule never needs new rollouts.

Images are stored as paths. In a JSONL file they are relative to the file's directory;
`resolve_images` turns them into absolute paths after loading.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

StepKind = Literal["perception", "reasoning"]
AnswerType = Literal["multiple_choice", "integer", "float", "text", "expression"]


def _from_dict(cls, data: dict):
    """Build a dataclass from a dict, ignoring unknown keys (forward compatible)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Problem:
    """An image question with a reference answer."""

    id: str
    benchmark: str
    question: str
    images: list[str] = field(default_factory=list)
    options: list[str] | None = None
    answer: str = ""
    answer_type: str = "text"
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Problem":
        return _from_dict(cls, data)

    def resolve_images(self, base_dir: str | os.PathLike) -> "Problem":
        """Return a copy whose relative image paths are made absolute against base_dir."""
        base = os.fspath(base_dir)
        imgs = [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in self.images]
        return dataclasses.replace(self, images=imgs)


@dataclass
class StepEvidence:
    """Raw evidence about one step's correctness. Every field is optional.

    mc_correct / mc_total: Monte Carlo continuations from the prefix ending at this step that
    reached the right answer, out of how many. mc_probed is False for steps whose MC value was
    inferred (binary search) rather than measured.
    judge_verdict: "correct" | "incorrect" | None; judge_rationale is the judge's text for it.
    """

    mc_correct: int | None = None
    mc_total: int | None = None
    mc_probed: bool = False
    judge_verdict: str | None = None
    judge_rationale: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mc_ratio(self) -> float | None:
        if not self.mc_total:
            return None
        return self.mc_correct / self.mc_total

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "StepEvidence":
        return _from_dict(cls, data or {})


@dataclass
class Step:
    """One step of a solution. kind is "perception" or "reasoning"."""

    text: str
    kind: str = "reasoning"
    evidence: StepEvidence = field(default_factory=StepEvidence)

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "evidence": self.evidence.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Step":
        return cls(text=data["text"], kind=data.get("kind", "reasoning"),
                   evidence=StepEvidence.from_dict(data.get("evidence")))


@dataclass
class Solution:
    """One policy solution to a problem, split into steps.

    id is stable: "{problem_id}#{candidate index}" by convention (see `solution_id`).
    """

    id: str
    problem_id: str
    policy: str
    text: str
    steps: list[Step] = field(default_factory=list)
    final_answer: str | None = None
    correct: bool | None = None
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = [s.to_dict() for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Solution":
        obj = _from_dict(cls, data)
        obj.steps = [Step.from_dict(s) for s in data.get("steps", [])]
        return obj


def solution_id(problem_id: str, index: int) -> str:
    """The stable id of the index-th candidate solution of a problem."""
    return f"{problem_id}#{index}"
