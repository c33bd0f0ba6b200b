"""Chat SFT of a Qwen2.5-VL model on EVPV data (description SFT, step-judge SFT).

Trains on chat rows written by `experiments.evpv.data_builders` (a dataset dir with data.jsonl) with
TRL's SFTTrainer and `ChatSFTCollator` (loss on assistant turns only). A YAML recipe sets
defaults (`--config`), command-line flags override them; every `SFTConfig` /
`TrainingArguments` flag works.

    python -m experiments.evpv.sft_chat --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct \
        --dataset out/evpv_data/describe --output_dir out/describer --use_lora true \
        --num_train_epochs 1 --per_device_train_batch_size 2 --learning_rate 1e-5
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install


def main(argv: list[str] | None = None) -> str:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from experiments.evpv.train_utils import (ChatSFTCollator, load_model_and_processor, load_rows, parse_args,
                                              train_and_save)

    script_args, training_args = parse_args(SFTConfig, argv)
    t0 = time.time()
    rows = load_rows(script_args.dataset, "chat_sft", script_args.max_train_samples)
    train = Dataset.from_list([{"messages": r["messages"], "images": r["images"]} for r in rows])
    eval_ds = None
    if script_args.eval_dataset:
        ev = load_rows(script_args.eval_dataset, "chat_sft")
        eval_ds = Dataset.from_list([{"messages": r["messages"], "images": r["images"]} for r in ev])
    # Our collator does the tokenization: keep the raw columns and skip TRL's preparation.
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    model, processor = load_model_and_processor(script_args, training_args)
    collator = ChatSFTCollator(processor, max_length=training_args.max_length)
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=eval_ds,
                         processing_class=processor, data_collator=collator)
    return train_and_save(trainer, processor, script_args, training_args, "sft_chat", t0, rows=len(rows),
                          truncated_sequences=collator.truncated)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
