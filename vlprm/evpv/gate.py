"""The gate: scale a visually dependent step's reward by the reliability of its visual premises.

For a step with reward p (a PRM's P(+), or a judge's +1/-1 mapped to [0, 1] by
`judge_to_unit`) and reliability r (`vlprm.evpv.verify`):

* ``multiply`` (default): p * r ** alpha
* ``threshold``: p if r >= tau, else p * low (low=0: the step is zeroed)
* ``min``: min(p, r)
* ``softmin``: a smooth min(p, r) with temperature T, -T log((e^{-p/T} + e^{-r/T}) / 2),
  capped at p so the gate never raises a reward; T -> 0 gives min(p, r)

Steps that are not visually dependent keep p. With ``propagate`` a step's reliability is the
lowest reliability of any visually dependent step so far (an early wrong fact taints every
later step, as in the PRM label semantics), applied to every later step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

GATES = ("multiply", "threshold", "min", "softmin")


@dataclass
class GateConfig:
    """How reliabilities scale rewards (see the module docstring)."""

    kind: str = "multiply"
    alpha: float = 1.0
    tau: float = 0.5
    low: float = 0.0
    temperature: float = 0.1
    propagate: bool = False

    def __post_init__(self):
        if self.kind not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}, got {self.kind!r}")
        if self.temperature <= 0:
            raise ValueError(f"gate temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.low <= 1.0:
            raise ValueError(f"gate low must be in [0, 1], got {self.low}")

    def to_dict(self) -> dict:
        return asdict(self)


def judge_to_unit(verdict: float) -> float:
    """A judge's step verdict in [-1, 1] (+1 correct, -1 incorrect) as a reward in [0, 1]."""
    return min(1.0, max(0.0, (float(verdict) + 1.0) / 2.0))


def gate_reward(p: float, r: float, cfg: GateConfig | None = None) -> float:
    """The gated reward of one visually dependent step."""
    cfg = cfg or GateConfig()
    r = min(1.0, max(0.0, float(r)))
    p = float(p)
    if cfg.kind == "multiply":
        return p * r ** cfg.alpha
    if cfg.kind == "threshold":
        return p if r >= cfg.tau else p * cfg.low
    if cfg.kind == "min":
        return min(p, r)
    t = cfg.temperature
    m = min(p, r)  # shift for numerical stability
    soft = m - t * math.log((math.exp(-(p - m) / t) + math.exp(-(r - m) / t)) / 2.0)
    return min(p, soft)


def effective_reliabilities(reliabilities: Sequence[float], visual_dependent: Sequence[bool],
                            propagate: bool = False) -> list[float | None]:
    """The reliability that gates each step (None: the step is not gated)."""
    out: list[float | None] = []
    running = 1.0
    seen = False
    for r, dep in zip(reliabilities, visual_dependent):
        if dep:
            running = min(running, float(r))
            seen = True
        if propagate and seen:
            out.append(running)
        else:
            out.append(float(r) if dep else None)
    return out


def gate_steps(rewards: Sequence[float], reliabilities: Sequence[float], visual_dependent: Sequence[bool],
               cfg: GateConfig | None = None) -> list[float]:
    """Gated per-step rewards; steps without visual premises are unchanged (unless propagated)."""
    cfg = cfg or GateConfig()
    if not (len(rewards) == len(reliabilities) == len(visual_dependent)):
        raise ValueError(f"gate_steps: {len(rewards)} rewards, {len(reliabilities)} reliabilities, "
                         f"{len(visual_dependent)} visual flags")
    eff = effective_reliabilities(reliabilities, visual_dependent, cfg.propagate)
    return [float(p) if r is None else gate_reward(p, r, cfg) for p, r in zip(rewards, eff)]
