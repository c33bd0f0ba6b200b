"""Metrics: test-time scaling (`vlprm.metrics.tts`: pass@k, BoN@k, weighted@k, maj@k and the
VL-PRM authors' rule as bon@k[vlprm_outcome], all k from one sampled set) and step-error
detection (`vlprm.metrics.process`: VisualProcessBench F1, ProcessBench first-error F1)."""

from vlprm.metrics.process import first_error_f1, predicted_first_error, process_bench_f1
from vlprm.metrics.tts import (
    VLPRM_OUTCOME_ROW, bon_at_k, bon_choice_probs, first_max_choice_probs, k_values, majority_at_k, pass_at_k,
    tts_metrics, vlprm_rule_bon_at_k, weighted_at_k,
)

__all__ = [
    "VLPRM_OUTCOME_ROW", "k_values", "pass_at_k", "bon_choice_probs", "bon_at_k", "first_max_choice_probs",
    "vlprm_rule_bon_at_k", "weighted_at_k", "majority_at_k", "tts_metrics", "process_bench_f1",
    "predicted_first_error", "first_error_f1",
]
