"""The PRM training run's own arguments (everything `transformers.TrainingArguments` does not cover).

Parsed together with `TrainingArguments` by `trl.TrlParser`, so a YAML recipe (`--config`) sets
defaults and command-line flags override them:

    python train/sft_qwen.py --config train/configs/prm_default.yaml --learning_rate 2e-5
"""

from __future__ import annotations

from dataclasses import dataclass, field

LABEL_MODES = ("hard", "soft")


@dataclass
class PRMTrainConfig:
    """Model, data, label and adapter settings of a PRM training run."""

    # ---- model
    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-VL-7B-Instruct",
        metadata={"help": "Base Qwen2.5-VL model (local dir or hub id)."})
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention kernel: sdpa, eager or flash_attention_2."})
    freeze_vision: bool = field(
        default=False, metadata={"help": "Freeze the vision tower (patch embedding and ViT blocks)."})
    freeze_merger: bool = field(
        default=False, metadata={"help": "Freeze the vision-to-language merger (projector) as well."})

    # ---- data
    dataset: str | None = field(
        default=None,
        metadata={"help": "Training data: a PRM export dir (prm.jsonl or hf/), a datasets save_to_disk dir, "
                          "a JSONL file, or a hub dataset id (columns question, steps, images, labels"
                          "[, soft_labels])."})
    dataset_split: str = field(default="train", metadata={"help": "Split to read from a DatasetDict / hub id."})
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Separate validation data (same forms as --dataset)."})
    eval_dataset_split: str = field(default="train", metadata={"help": "Split of --eval_dataset."})
    eval_fraction: float = field(
        default=0.0,
        metadata={"help": "Hold out this fraction of --dataset for validation (grouped by problem_id, so "
                          "solutions of one problem never straddle the split). Ignored with --eval_dataset."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation rows."})
    dataset_num_proc: int = field(
        default=1, metadata={"help": "Processes for the encode-and-check pass over the data."})
    index_cache: bool = field(
        default=True,
        metadata={"help": "Cache the encode-and-check results under output_dir/data_index/ (reused by other "
                          "ranks and by resumed runs)."})

    # ---- PRM format
    system_prompt: str | None = field(
        default="auto",
        metadata={"help": "System prompt: 'auto' (the training set's own record, e.g. an imported released "
                          "dataset, else vlprm), a variant of vlprm.prm.format.SYSTEM_PROMPTS (vlprm, none), "
                          "'file:PATH' or the prompt text. Saved to vlprm_prm.json for the scorer."})
    step_suffix: str | None = field(
        default=None,
        metadata={"help": "Text appended to every step ('' ours, '\\n\\n' VL-PRM's); default: the training "
                          "set's own record, else ''. Saved to vlprm_prm.json for the scorer."})
    label_mode: str = field(
        default="hard",
        metadata={"help": "hard: cross-entropy on the '+'/'-' token; soft: cross-entropy over {+,-} against "
                          "soft_labels (MC ratio), hard for steps without one.", "choices": list(LABEL_MODES)})
    # The paper's bounds (256 to 1280 visual tokens of 28x28 pixels) live in the recipe only.
    min_pixels: int | None = field(
        default=None, metadata={"help": "Image processor min_pixels (default: the model processor's own)."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Image processor max_pixels (default: the model processor's own)."})
    max_length: int = field(
        default=4096, metadata={"help": "Samples longer than this (tokens, image tokens included) are skipped."})

    # ---- LoRA
    use_lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of all weights."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="language",
        metadata={"help": "'language' (every linear layer of the language model), 'all-linear', a comma "
                          "list of module names, or a regex matched against full module names."})
    lora_modules_to_save: str | None = field(
        default=None, metadata={"help": "Comma list of modules trained in full next to the adapter (e.g. lm_head)."})
    lora_merge_at_end: bool = field(
        default=True,
        metadata={"help": "After training, merge the adapter into the base and save a full model to "
                          "output_dir (the adapter goes to output_dir/adapter)."})

    # ---- logging
    wandb_project: str | None = field(
        default=None, metadata={"help": "W&B project (sets WANDB_PROJECT unless already set)."})

    def __post_init__(self):
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")
