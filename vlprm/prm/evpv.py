"""EVPV as a PRM scorer choice (the implementation lives in `vlprm.evpv`).

    from vlprm.prm.evpv import build_evpv_scorer
    scorer = build_evpv_scorer({"gate": "multiply", "cache_dir": "out/evpv"}, base_scorer, generator)
    step_scores = scorer.score(samples)          # list[StepScores], gated P(+) per step
"""

from vlprm.evpv.scoring import (
                                ConstantScorer,
                                EVPVConfig,
                                EVPVResult,
                                EVPVScorer,
                                PrecomputedScorer,
                                build_evpv_scorer,
                                score_candidates,
)

__all__ = ["ConstantScorer", "EVPVConfig", "EVPVResult", "EVPVScorer", "PrecomputedScorer",
           "build_evpv_scorer", "score_candidates"]
