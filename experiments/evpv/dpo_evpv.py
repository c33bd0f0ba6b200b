"""DPO of a Qwen2.5-VL policy on EVPV preference pairs (TRL's DPOTrainer).

Trains on the pairs written by `experiments.evpv.data_builders.build_dpo_pairs` (chosen = a correct
solution, rejected = an incorrect one of the same problem, with the policy prompt and image).
A YAML recipe sets defaults (`--config`), flags override them; every `DPOConfig` flag works
(beta, loss_type, max_length, ...). With --use_lora the reference model is the base model with
the adapter disabled (no second copy in memory).

    python -m experiments.evpv.dpo_evpv --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct \
        --dataset out/evpv_data/dpo --output_dir out/policy-dpo --use_lora true --beta 0.1
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from experiments.evpv.train_utils import VLMTrainArguments  # noqa: E402


@dataclass
class DPOArguments(VLMTrainArguments):
    """Model, data and adapter settings (the rest is DPOConfig)."""

    model_name_or_path: str = field(default="Qwen/Qwen2.5-VL-3B-Instruct",
                                    metadata={"help": "Policy to train (local dir or hub id)."})
    dataset: str | None = field(default=None, metadata={"help": "Dataset dir (data.jsonl) or JSONL of DPO rows."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Validation pairs (same forms)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many pairs."})


def _dataset(rows: list[dict]):
    """A datasets.Dataset whose "images" decode to PIL images (what TRL's vision collator wants)."""
    from datasets import Dataset, Image, List

    keep = ("images", "prompt", "chosen", "rejected")
    ds = Dataset.from_list([{k: r[k] for k in keep} for r in rows])
    return ds.cast_column("images", List(Image()))


def main(argv: list[str] | None = None) -> str:
    from trl import DPOConfig, DPOTrainer, TrlParser

    parser = TrlParser((DPOArguments, DPOConfig))
    from experiments.evpv.train_utils import cpu_defaults

    script_args, training_args = parser.parse_args_and_config(args=cpu_defaults(argv))
    if not script_args.dataset:
        parser.error("--dataset is required (a dir written by experiments.evpv.data_builders.build_dpo_pairs)")

    from experiments.evpv.train_utils import load_rows
    from vlprm.prm.format import load_prm_processor
    from vlprm.training.run import load_model, save_model

    t0 = time.time()
    rows = load_rows(script_args.dataset, "dpo", script_args.max_train_samples)
    eval_ds = _dataset(load_rows(script_args.eval_dataset, "dpo")) if script_args.eval_dataset else None
    processor = load_prm_processor(script_args.model_name_or_path, script_args.min_pixels, script_args.max_pixels)
    model = load_model(script_args, training_args)  # PRM training's loading and LoRA (a peft model with use_lora)
    trainer = DPOTrainer(model=model, args=training_args, train_dataset=_dataset(rows), eval_dataset=eval_ds,
                         processing_class=processor)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = str(save_model(trainer, script_args, processor))
    summary = {"pairs": len(rows), "steps": result.global_step, "train_loss": result.training_loss,
               "lora": script_args.use_lora, "saved": out, "seconds": round(time.time() - t0, 1)}
    Path(training_args.output_dir, "dpo_evpv_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"dpo_evpv: {summary['pairs']} pairs, {summary['steps']} steps, loss {summary['train_loss']:.4f}, "
          f"saved to {out} in {summary['seconds']}s")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
