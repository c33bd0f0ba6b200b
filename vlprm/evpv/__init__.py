"""Explicit visual premise verification (EVPV): check the visual facts a step relies on against a
structured description of the image, and gate the step's reward by how reliable they are.

Modules: config (`EVPVConfig`), description (schema, describer, per-image cache), checklist
(visual premises per step), verify (findings -> reliability; the `Verifier` protocol), gate
(reliability x reward), scoring (`EVPVScorer`, `build_evpv_scorer`), judge (a per-step judge,
with or without the description). Model calls go through `vlprm.cache`. The ablations, data
builders and training entry points are research harnesses: `experiments/evpv/`.
"""

from vlprm.evpv.checklist import StepPremises, parse_visual_tags, strip_visual_tags
from vlprm.evpv.config import EVPVConfig
from vlprm.evpv.description import ImageDescription, describe_images, description_from_facts
from vlprm.evpv.gate import GateConfig, gate_reward, gate_steps, judge_to_unit
from vlprm.evpv.scoring import (
    ConstantScorer,
    EVPVResult,
    EVPVScorer,
    PrecomputedScorer,
    build_evpv_scorer,
)
from vlprm.evpv.verify import Finding, ReliabilityWeights, Verifier, reliability, step_reliabilities

__all__ = [
    "ConstantScorer", "EVPVConfig", "EVPVResult", "EVPVScorer", "Finding", "GateConfig", "ImageDescription",
    "PrecomputedScorer", "ReliabilityWeights", "StepPremises", "Verifier", "build_evpv_scorer", "describe_images",
    "description_from_facts", "gate_reward", "gate_steps", "judge_to_unit", "parse_visual_tags", "reliability",
    "step_reliabilities", "strip_visual_tags",
]
