"""Schema, JSONL store and benchmark loaders."""

from vlprm.data.schema import Problem, Solution, Step, StepEvidence
from vlprm.data.store import JsonlStore

__all__ = ["Problem", "Solution", "Step", "StepEvidence", "JsonlStore"]
