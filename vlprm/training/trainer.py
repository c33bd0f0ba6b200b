"""`PRMTrainer`: a `transformers.Trainer` whose loss and metrics live only at the PRM label tokens.

Causal-LM shift: the label token of a step sits at position p (labels[p] = "+"/"-" id) and is
predicted from the logits at p - 1, exactly as Hugging Face's shifted LM loss and as the scorer
reads P(+). The model is asked only for the logits at those positions (`logits_to_keep`), so
neither training nor evaluation materialises full-vocabulary logits for the whole sequence.

Loss per trained step:
* hard: cross-entropy of the label token over the full vocabulary (what the model's own shifted
  LM loss gives with our labels);
* soft: cross-entropy over the pair {+, -} against the soft target q = P(+) (an MC ratio),
  -(q log p+ + (1 - q) log p-); steps without a soft target use the hard loss.
The batch loss is the sum over trained steps divided by `num_items_in_batch` (steps across the
accumulated batch and all ranks, the Trainer's own token-averaging), or their mean when called
without it.

Evaluation: `preprocess_logits_for_metrics` reduces each step's logits to the (+, -) pair and
`compute_step_metrics` reports step accuracy and F1 on "+" steps, on "-" steps and their mean,
from P(+) >= 0.5.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from vlprm.training.checkpoints import mark_complete
from vlprm.training.data import IGNORE_INDEX

_LOSS_ONLY_KEYS = ("labels", "soft_targets", "label_positions", "step_labels")


def step_losses(step_logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None, *,
                plus_id: int, minus_id: int, label_mode: str = "hard") -> torch.Tensor:
    """Per-step loss from the logits that predict each label token.

    step_logits: (N, V) logits at (label position - 1); targets: (N,) label token ids;
    soft: (N,) target P(+) or a negative value where there is none.
    """
    logits = step_logits.float()
    hard = F.cross_entropy(logits, targets, reduction="none")
    if label_mode != "soft" or soft is None:
        return hard
    pair = torch.log_softmax(logits[:, [plus_id, minus_id]], dim=-1)
    q = soft.to(pair.dtype).clamp(min=0.0, max=1.0)
    soft_loss = -(q * pair[:, 0] + (1.0 - q) * pair[:, 1])
    return torch.where(soft >= 0, soft_loss, hard)


class LabelPairLogits:
    """preprocess_logits_for_metrics: (B, S, V) per-step logits -> (B, S, 2) = (+, -) logits."""

    def __init__(self, plus_id: int, minus_id: int):
        self.ids = [plus_id, minus_id]

    def __call__(self, logits, labels):
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return logits[..., self.ids].float()


def compute_step_metrics(eval_pred) -> dict[str, float]:
    """Step-level accuracy and F1 from (+, -) logits and step labels (1 "+", 0 "-", -100 none).

    f1_plus: F1 with "+" steps as the positive class; f1_minus: with "-" steps; macro_f1: their
    mean. A step is predicted "+" when P(+) >= 0.5.
    """
    from vlprm.metrics import process_bench_f1

    preds = eval_pred.predictions
    preds = preds[0] if isinstance(preds, (tuple, list)) else preds
    labels = eval_pred.label_ids
    labels = labels[0] if isinstance(labels, (tuple, list)) else labels
    preds = np.asarray(preds, dtype=np.float64)
    labels = np.asarray(labels)
    s = min(preds.shape[1], labels.shape[1])
    preds, labels = preds[:, :s], labels[:, :s]
    mask = (labels == 0) | (labels == 1)
    if not mask.any():
        return {"step_accuracy": 0.0, "n_steps": 0}
    p_plus = 1.0 / (1.0 + np.exp(preds[..., 1] - preds[..., 0]))
    # booleans (True = "+" step): unambiguous whatever integer convention process_bench_f1 uses
    step_labels = [[bool(y == 1) for y in labels[i][mask[i]]] for i in range(len(labels)) if mask[i].any()]
    step_scores = [p_plus[i][mask[i]].tolist() for i in range(len(labels)) if mask[i].any()]
    f1 = process_bench_f1(step_labels, step_scores, threshold=0.5)["overall"]
    y = labels[mask]
    p = p_plus[mask]
    return {
        "step_accuracy": float(((p >= 0.5) == (y == 1)).mean()),
        "f1_plus": f1["f1_correct"],
        "f1_minus": f1["f1_incorrect"],
        "macro_f1": f1["macro_f1"],
        "mean_p_plus": float(p.mean()),
        "n_steps": int(mask.sum()),
    }


class PRMTrainer(Trainer):
    """Trainer with the PRM step loss, length-grouped sampling from precomputed lengths, and
    step-level evaluation metrics. Use with `PRMCollator` batches and `label_names=["step_labels"]`."""

    def __init__(self, *args, plus_id: int, minus_id: int, label_mode: str = "hard", **kwargs):
        self.plus_id = plus_id
        self.minus_id = minus_id
        self.label_mode = label_mode
        kwargs.setdefault("preprocess_logits_for_metrics", LabelPairLogits(plus_id, minus_id))
        kwargs.setdefault("compute_metrics", compute_step_metrics)
        super().__init__(*args, **kwargs)
        if self.args.label_names is None:
            self.label_names = ["step_labels"]
        # Ask the Trainer for num_items_in_batch (label steps over the accumulated batch and all
        # ranks); compute_loss normalises by it, so the loss counts as scaled for accumulation.
        self.model_accepts_loss_kwargs = True

    # -- checkpoints -------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        """The Trainer's save, then the completion marker (`vlprm.training.checkpoints`) once
        every rank has written its part, then the rotation of old checkpoints: a kill at any
        point leaves the previous complete checkpoint in place and this one unmarked."""
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"),
                          self.state.global_step)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    # -- sampling ----------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(ds, "lengths", None)
        if self.args.train_sampling_strategy == "group_by_length" and lengths is not None:
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        lengths = getattr(eval_dataset, "lengths", None)
        if self.args.train_sampling_strategy == "group_by_length" and lengths is not None:
            import torch.utils.data as tud

            if self.args.world_size <= 1:
                return tud.SequentialSampler(eval_dataset)
            return None  # the accelerator shards the eval batches itself
        return super()._get_eval_sampler(eval_dataset)

    # -- loss --------------------------------------------------------------------------------

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        labels = inputs["labels"]
        soft = inputs.get("soft_targets")
        label_positions = inputs.get("label_positions")
        model_inputs = {k: v for k, v in inputs.items() if k not in _LOSS_ONLY_KEYS}

        rows, cols = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
        # Logits are needed only where a label token is predicted: position p - 1.
        needed = [cols - 1]
        if return_outputs and label_positions is not None:
            needed.append(label_positions[label_positions > 0] - 1)
        keep = torch.unique(torch.cat(needed))
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)
        outputs = model(**model_inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits  # (B, len(keep), V)

        idx = torch.searchsorted(keep, cols - 1)
        per_step = step_losses(logits[rows, idx], labels[rows, cols],
                               soft[rows, cols] if soft is not None else None,
                               plus_id=self.plus_id, minus_id=self.minus_id, label_mode=self.label_mode)
        if per_step.numel() == 0:
            loss = logits.sum() * 0.0
        elif num_items_in_batch is not None:
            loss = per_step.sum() / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                # num_items_in_batch counts all ranks; gradients are averaged over ranks.
                loss = loss * self.accelerator.num_processes
        else:
            loss = per_step.mean()

        if not return_outputs:
            return loss
        if label_positions is None:  # a batch without them: the trained positions, in order
            counts = (labels != IGNORE_INDEX).sum(dim=1)
            label_positions = torch.full((labels.shape[0], int(counts.max().item() if counts.numel() else 0)), -1,
                                         dtype=torch.long, device=labels.device)
            for i in range(labels.shape[0]):
                p = (labels[i] != IGNORE_INDEX).nonzero().flatten()
                label_positions[i, :p.numel()] = p
        b, s = label_positions.shape
        step_logits = logits.new_zeros((b, s, logits.shape[-1]))
        valid = label_positions > 0
        r, k = valid.nonzero(as_tuple=True)
        step_logits[r, k] = logits[r, torch.searchsorted(keep, label_positions[r, k] - 1)]
        return loss, {"label_logits": step_logits}
