"""What the EVPV training entry points share: data loading and the chat-SFT collator. The model,
its LoRA adapter and the saving are PRM training's own (`vlprm.training.run.load_model`,
`save_model`), with the same model and adapter arguments (`VLMTrainArguments`).

`ChatSFTCollator` turns chat rows (`experiments.evpv.data_builders`) into Qwen2.5-VL inputs and masks
every token but the assistant turns' contents and their end-of-turn token. The assistant spans
are found from the rendered structure (the "<|im_start|>assistant\\n" header token sequence and
the next "<|im_end|>"), by position, so a header-like string inside user text cannot shift them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from experiments.evpv.data_builders import read_dataset
from vlprm.backends.base import load_image
from vlprm.training.config import PRMTrainConfig
from vlprm.training.data import IGNORE_INDEX

ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"

# The model, pixel and adapter arguments of PRM training, declared once (in PRMTrainConfig).
_SHARED = ("attn_implementation", "freeze_vision", "freeze_merger", "min_pixels", "max_pixels", "use_lora",
           "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save", "lora_merge_at_end")
VLMTrainArguments = dataclasses.make_dataclass("VLMTrainArguments", [
    (f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
    for f in dataclasses.fields(PRMTrainConfig) if f.name in _SHARED])
VLMTrainArguments.__doc__ = "Model loading and adapter settings shared with PRM training."


@dataclass
class EVPVTrainArguments(VLMTrainArguments):
    """Model, data and adapter settings of the EVPV SFT / DPO entry points (the rest is TRL's
    SFTConfig / DPOConfig)."""

    model_name_or_path: str = field(default="Qwen/Qwen2.5-VL-3B-Instruct",
                                    metadata={"help": "Model to train (local dir or hub id)."})
    dataset: str | None = field(default=None, metadata={
        "help": "Dataset dir (data.jsonl, written by experiments.evpv.data_builders) or a JSONL file."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Validation data (same forms)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many rows."})


def parse_args(config_cls: type, argv: list[str] | None):
    """(EVPVTrainArguments, TRL config) from --config YAML + flags (CPU-safe defaults without a GPU)."""
    from trl import TrlParser

    parser = TrlParser((EVPVTrainArguments, config_cls))
    script_args, training_args = parser.parse_args_and_config(args=cpu_defaults(argv))
    if not script_args.dataset:
        parser.error("--dataset is required (a dir written by experiments.evpv.data_builders, or a JSONL file)")
    return script_args, training_args


def load_model_and_processor(script_args, training_args):
    """The model (PRM training's loading and LoRA: a peft model with --use_lora) and its processor."""
    from vlprm.prm.format import load_prm_processor
    from vlprm.training.run import load_model

    processor = load_prm_processor(script_args.model_name_or_path, script_args.min_pixels, script_args.max_pixels)
    return load_model(script_args, training_args), processor


def train_and_save(trainer, processor, script_args, training_args, name: str, t0: float, **counts) -> str:
    """Train, save (PRM training's `save_model`), write OUTPUT/{name}_summary.json; the saved dir."""
    import json
    import time
    from pathlib import Path

    from vlprm.training.run import save_model

    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = str(save_model(trainer, script_args, processor))
    summary = {**counts, "steps": result.global_step, "train_loss": result.training_loss,
               "lora": script_args.use_lora, "saved": out, "seconds": round(time.time() - t0, 1)}
    Path(training_args.output_dir, f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
    what = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"{name}: {what}, {summary['steps']} steps, loss {summary['train_loss']:.4f}, saved to {out} "
          f"in {summary['seconds']}s")
    return out


def to_hf_messages(messages: Sequence[dict], n_images: int) -> list[dict]:
    """String-content chat messages -> HF multimodal messages with n_images image parts before
    the text of the first user turn (the inverse of `data_builders.flatten_messages`)."""
    out, placed = [], False
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            out.append(m)
            continue
        parts: list[dict] = []
        if m["role"] == "user" and not placed:
            parts = [{"type": "image"} for _ in range(n_images)]
            placed = True
        parts.append({"type": "text", "text": content})
        out.append({"role": m["role"], "content": parts})
    if n_images and not placed:
        raise ValueError("a row with images has no user turn to put them in")
    return out


def assistant_spans(input_ids: Sequence[int], header_ids: Sequence[int], end_id: int) -> list[tuple[int, int]]:
    """[start, end) of each assistant content, end-of-turn token included."""
    ids = list(input_ids)
    n = len(header_ids)
    spans = []
    i = 0
    while i <= len(ids) - n:
        if ids[i:i + n] == list(header_ids):
            start = i + n
            j = start
            while j < len(ids) and ids[j] != end_id:
                j += 1
            spans.append((start, min(j + 1, len(ids))))
            i = j
        else:
            i += 1
    return spans


@dataclass
class ChatSFTCollator:
    """Batches chat rows {"messages", "images"} for a Qwen2.5-VL-style processor; loss only on
    assistant turns. Sequences longer than max_length are cut at the right (images come first,
    so only the end of the conversation is lost) and the cut is counted in `truncated`."""

    processor: Any
    max_length: int | None = None
    truncated: int = field(default=0, init=False)

    def __post_init__(self):
        tok = self.processor.tokenizer
        self.header_ids = tok.encode(ASSISTANT_HEADER, add_special_tokens=False)
        self.end_id = tok.convert_tokens_to_ids(END_OF_TURN)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        texts, images = [], []
        for ex in examples:
            imgs = [load_image(x) for x in ex.get("images") or []]
            msgs = to_hf_messages(ex["messages"], len(imgs))
            texts.append(self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False))
            images.extend(imgs)
        enc = self.processor(text=texts, images=images or None, padding=True, padding_side="right",
                             return_tensors="pt")
        ids = enc["input_ids"]
        labels = torch.full_like(ids, IGNORE_INDEX)
        for b in range(ids.shape[0]):
            for s, e in assistant_spans(ids[b].tolist(), self.header_ids, self.end_id):
                labels[b, s:e] = ids[b, s:e]
        labels[enc["attention_mask"] == 0] = IGNORE_INDEX
        enc["labels"] = labels
        if self.max_length is not None and ids.shape[1] > self.max_length:
            self.truncated += int((enc["attention_mask"].sum(1) > self.max_length).sum())
            for k in ("input_ids", "attention_mask", "labels", "mm_token_type_ids"):
                if k in enc:
                    enc[k] = enc[k][:, : self.max_length]
        return dict(enc)


def cpu_defaults(argv: list[str] | None) -> list[str]:
    """Command-line flags with CPU-safe defaults put first when there is no GPU (TRL's configs
    default to bf16, which the trainer refuses on CPU); flags the user gave still win."""
    import sys

    import torch

    argv = list(sys.argv[1:] if argv is None else argv)
    if torch.cuda.is_available():
        return argv
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    extra = []
    for flag, value in (("--use_cpu", "true"), ("--bf16", "false")):
        if flag not in given:
            extra += [flag, value]
    return extra + argv


def load_rows(path: str | os.PathLike, kind: str, limit: int | None = None) -> list[dict]:
    """Rows of a dataset written by `experiments.evpv.data_builders` (checked against `kind`)."""
    rows, meta = read_dataset(path)
    if meta.get("kind") and meta["kind"] != kind:
        raise ValueError(f"{path}: a {meta['kind']!r} dataset, this entry point trains on {kind!r} data")
    need = ("messages",) if kind == "chat_sft" else ("prompt", "chosen", "rejected")
    for r in rows:
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"{path}: row {r.get('id')!r} lacks {', '.join(missing)}; was it written by "
                             "experiments.evpv.data_builders?")
    return rows[:limit] if limit else rows
