"""EVPV experiments: the ablations (`ablations`, CLI `python -m experiments.evpv.cli`), the training
data builders (`data_builders`), a model-free verifier (`lexical`) and the SFT / DPO entry points
(`sft_chat`, `dpo_evpv`, sharing `train_utils`)."""
