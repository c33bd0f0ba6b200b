"""Step labels for PRM training data: rollouts, Monte Carlo evidence (per-step or OmegaPRM
binary search), a VLM judge, label views combined from the evidence, and the export.

    rollouts.py   policy solutions split into perception / reasoning steps
    mc.py         per-step Monte Carlo estimation (and the shared `Prober`)
    omegaprm.py   binary search for the first error step
    judge.py      judge prompts' replies parsed, cached, batch files
    combine.py    label views (mc, soft, judge, hybrid, consensus) from stored evidence
    export.py     the PRM dataset on disk and the stats report
    config.py     the run config (the policy section is vlprm.sampling.PolicyConfig)
    stages.py     the rollouts and mc stages; judge_stage.py the judge stage
    pipeline.py   the stage runner on the run layer (rollout_data_generation/run.py)
    merge.py      combine + export over every shard's files (old-layout shard dirs joined first)

Importing this package imports no heavy dependency.
"""

from vlprm.synthesis.combine import VIEWS, Evidence, label, labels_from_first_error, mc_first_error

__all__ = ["VIEWS", "Evidence", "label", "labels_from_first_error", "mc_first_error"]
