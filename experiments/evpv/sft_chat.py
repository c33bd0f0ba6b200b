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

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from experiments.evpv.train_utils import VLMTrainArguments  # noqa: E402


@dataclass
class ChatSFTArguments(VLMTrainArguments):
    """Model, data and adapter settings (the rest is SFTConfig)."""

    model_name_or_path: str = field(default="Qwen/Qwen2.5-VL-3B-Instruct",
                                    metadata={"help": "Base model (local dir or hub id)."})
    dataset: str | None = field(default=None, metadata={"help": "Dataset dir (data.jsonl) or JSONL file of chat rows."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Validation data (same forms)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many rows."})


def main(argv: list[str] | None = None) -> str:
    from trl import SFTConfig, SFTTrainer, TrlParser

    parser = TrlParser((ChatSFTArguments, SFTConfig))
    from experiments.evpv.train_utils import cpu_defaults

    script_args, training_args = parser.parse_args_and_config(args=cpu_defaults(argv))
    if not script_args.dataset:
        parser.error("--dataset is required (a dir written by experiments.evpv.data_builders, or a JSONL file)")

    from datasets import Dataset

    from experiments.evpv.train_utils import ChatSFTCollator, load_rows
    from vlprm.prm.format import load_prm_processor
    from vlprm.training.run import load_model, save_model

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
    processor = load_prm_processor(script_args.model_name_or_path, script_args.min_pixels, script_args.max_pixels)
    model = load_model(script_args, training_args)  # PRM training's loading and LoRA (a peft model with use_lora)
    collator = ChatSFTCollator(processor, max_length=training_args.max_length)
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=eval_ds,
                         processing_class=processor, data_collator=collator)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = str(save_model(trainer, script_args, processor))
    summary = {"rows": len(rows), "steps": result.global_step, "train_loss": result.training_loss,
               "truncated_sequences": collator.truncated, "lora": script_args.use_lora, "saved": out,
               "seconds": round(time.time() - t0, 1)}
    Path(training_args.output_dir, "sft_chat_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"sft_chat: {summary['rows']} rows, {summary['steps']} steps, loss {summary['train_loss']:.4f}, "
          f"{summary['truncated_sequences']} truncated, saved to {out} in {summary['seconds']}s")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
