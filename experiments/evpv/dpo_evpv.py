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

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install


def _dataset(rows: list[dict]):
    """A datasets.Dataset whose "images" decode to PIL images (what TRL's vision collator wants)."""
    from datasets import Dataset, Image, List

    keep = ("images", "prompt", "chosen", "rejected")
    ds = Dataset.from_list([{k: r[k] for k in keep} for r in rows])
    return ds.cast_column("images", List(Image()))


def main(argv: list[str] | None = None) -> str:
    from trl import DPOConfig, DPOTrainer

    from experiments.evpv.train_utils import load_model_and_processor, load_rows, parse_args, train_and_save

    script_args, training_args = parse_args(DPOConfig, argv)
    t0 = time.time()
    rows = load_rows(script_args.dataset, "dpo", script_args.max_train_samples)
    eval_ds = _dataset(load_rows(script_args.eval_dataset, "dpo")) if script_args.eval_dataset else None
    model, processor = load_model_and_processor(script_args, training_args)
    trainer = DPOTrainer(model=model, args=training_args, train_dataset=_dataset(rows), eval_dataset=eval_ds,
                         processing_class=processor)
    return train_and_save(trainer, processor, script_args, training_args, "dpo_evpv", t0, pairs=len(rows))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
