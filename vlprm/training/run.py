"""One PRM training run: data -> model -> PRMTrainer -> a checkpoint the scorer loads unchanged.

Entry point: `train/sft_qwen.py` (argument parsing) calls `train_prm(config, training_args)`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from vlprm.training.checkpoints import resolve_resume
from vlprm.training.config import PRMTrainConfig

logger = logging.getLogger("vlprm.training")

PRM_META_FILE = "vlprm_prm.json"  # read by vlprm.prm.scorer (its PRM_CONFIG_FILE)
SUMMARY_FILE = "train_summary.json"


def prepare_training_args(args) -> None:
    """Settings the PRM trainer needs whatever the recipe says."""
    args.remove_unused_columns = False  # the collator's extra keys (label positions) must survive
    if args.label_names is None:
        args.label_names = ["step_labels"]
    if args.gradient_checkpointing and args.gradient_checkpointing_kwargs is None:
        args.gradient_checkpointing_kwargs = {"use_reentrant": False}


def uses_deepspeed(args) -> bool:
    return bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def load_model(cfg: PRMTrainConfig, args):
    """The base model in the dtype the run trains in, vision parts frozen as asked, LoRA applied."""
    import torch
    from transformers import AutoModelForImageTextToText

    # DeepSpeed keeps fp32 master weights itself, so its module can be bf16; a plain Trainer run
    # keeps fp32 weights and autocasts.
    if uses_deepspeed(args) and (args.bf16 or args.fp16):
        dtype = torch.bfloat16 if args.bf16 else torch.float16
    else:
        dtype = torch.float32
    kw = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(cfg.model_name_or_path, dtype=dtype, **kw)
    model.config.use_cache = False
    freeze_vision_parts(model, vision=cfg.freeze_vision, merger=cfg.freeze_merger)
    if cfg.use_lora:
        from vlprm.training.lora import apply_lora

        model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                           target_modules=cfg.lora_target_modules, modules_to_save=cfg.lora_modules_to_save,
                           gradient_checkpointing=args.gradient_checkpointing)
    return model


def vision_tower(model):
    """The vision tower of a Qwen2.5-VL model (also under a peft wrapper)."""
    for m in (model, getattr(model, "model", None), getattr(getattr(model, "model", None), "model", None)):
        if m is not None and hasattr(m, "visual"):
            return m.visual
    base = getattr(model, "get_base_model", None)
    if base is not None:
        return vision_tower(base())
    raise AttributeError(f"{type(model).__name__} has no vision tower (.visual)")


def freeze_vision_parts(model, *, vision: bool, merger: bool) -> None:
    """Freeze the ViT (patch embedding + blocks) and/or the merger that projects into the LM."""
    if not (vision or merger):
        return
    for name, p in vision_tower(model).named_parameters():
        is_merger = name.startswith("merger.")
        if (is_merger and merger) or (not is_merger and vision):
            p.requires_grad_(False)


def count_parameters(model) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = p.ds_numel if hasattr(p, "ds_numel") else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def build_datasets(cfg: PRMTrainConfig, args, encoder):
    """Train and validation datasets (validation: --eval_dataset, else a grouped fraction)."""
    from vlprm.training.data import build_prm_dataset, load_prm_records, split_by_group

    if not cfg.dataset:
        raise ValueError("no training data: pass --dataset (a PRM export dir, JSONL file or hub id)")
    train_records, train_bad = load_prm_records(cfg.dataset, cfg.dataset_split, cfg.max_train_samples)
    eval_records, eval_bad = [], []
    if cfg.eval_dataset:
        eval_records, eval_bad = load_prm_records(cfg.eval_dataset, cfg.eval_dataset_split, cfg.max_eval_samples)
    elif cfg.eval_fraction > 0:
        train_records, eval_records = split_by_group(train_records, cfg.eval_fraction, seed=args.seed)
        eval_records = eval_records[:cfg.max_eval_samples] if cfg.max_eval_samples else eval_records
    cache_dir = Path(args.output_dir) / "data_index" if cfg.index_cache else None
    with args.main_process_first(local=True, desc="PRM data check"):
        log = args.process_index == 0
        train_ds = build_prm_dataset(train_records, encoder, name="train", pre_skipped=train_bad,
                                     cache_dir=cache_dir, num_proc=cfg.dataset_num_proc, log=log)
        eval_ds = None
        if eval_records:
            eval_ds = build_prm_dataset(eval_records, encoder, name="eval", pre_skipped=eval_bad,
                                        cache_dir=cache_dir, num_proc=cfg.dataset_num_proc, log=log)
    return train_ds, eval_ds


def prm_meta(cfg: PRMTrainConfig, encoder) -> dict:
    """vlprm_prm.json: the PRM settings record (`vlprm.prm.settings`) every scorer reads to
    rebuild the exact training inputs, plus what the checkpoint was trained from."""
    return encoder.format.to_record(
        system_prompt_spec=cfg.system_prompt, label_ids={"plus": encoder.tokens.plus_id, "minus": encoder.tokens.minus_id},
        label_mode=cfg.label_mode, max_length=cfg.max_length, base_model=cfg.model_name_or_path,
        train_dataset=cfg.dataset)


def save_final(trainer, cfg: PRMTrainConfig, processor, encoder) -> Path:
    """Save a standard HF model + processor + vlprm_prm.json to output_dir (LoRA: merged)."""
    out = save_model(trainer, cfg, processor)
    if trainer.is_world_process_zero():
        (out / PRM_META_FILE).write_text(json.dumps(prm_meta(cfg, encoder), indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    return out


def save_model(trainer, cfg, processor) -> Path:
    """Save the trained model + processor to output_dir; with LoRA (cfg.use_lora) the adapter
    goes to output_dir/adapter and is merged into a full model in output_dir unless
    cfg.lora_merge_at_end is false. Used by PRM training and the EVPV SFT / DPO entry points."""
    out = Path(trainer.args.output_dir)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    cfg_obj = getattr(unwrapped, "config", None)
    if cfg_obj is not None:
        cfg_obj.use_cache = True  # training turned it off; the saved model is for inference
    if cfg.use_lora:
        adapter_dir = out / "adapter"
        trainer.save_model(str(adapter_dir))  # every rank: DeepSpeed gathers the weights
        if trainer.is_world_process_zero():
            processor.save_pretrained(adapter_dir)
            if cfg.lora_merge_at_end:
                from vlprm.training.lora import merge_lora

                merge_lora(cfg.model_name_or_path, adapter_dir, out, processor_from=adapter_dir)
    else:
        trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        processor.save_pretrained(out)
    return out


def _loss_curve(log_history: list[dict]) -> list[tuple[int, float]]:
    return [(h["step"], float(h["loss"])) for h in log_history if "loss" in h and "step" in h]


def format_summary(s: dict) -> str:
    lines = ["", "=== PRM training summary ===",
             f"model: {s['model']}  ->  {s['output_dir']}",
             f"train samples: {s['train_samples']} used, {s['train_skipped']} skipped {s['train_skip_reasons'] or ''}",
             f"eval samples: {s['eval_samples']} used, {s['eval_skipped']} skipped {s['eval_skip_reasons'] or ''}",
             f"steps: {s['global_step']} (epochs {s['epochs']:.2f})"
             + (f", resumed from {s['resumed_from']}" if s["resumed_from"] else "")]
    curve = s["loss_curve"]
    if curve:
        lines.append(f"train loss: {curve[0][1]:.4f} (step {curve[0][0]}) -> {curve[-1][1]:.4f} "
                     f"(step {curve[-1][0]}); run mean {s['train_loss']:.4f}")
    if s["eval_metrics"]:
        m = s["eval_metrics"]
        keys = ("eval_loss", "eval_step_accuracy", "eval_f1_plus", "eval_f1_minus", "eval_macro_f1", "eval_n_steps")
        lines.append("eval: " + ", ".join(f"{k[5:]} {m[k]:.4g}" for k in keys if k in m))
    lines.append(f"time: {s['total_time_s']:.1f} s (training {s['train_time_s']:.1f} s)")
    lines.append(f"saved: model + processor + {PRM_META_FILE} in {s['output_dir']}")
    return "\n".join(lines)


def train_prm(cfg: PRMTrainConfig, args) -> dict[str, Any]:
    """Run one PRM training and return its summary (also written to output_dir/train_summary.json)."""
    import transformers
    from transformers import set_seed

    from vlprm.prm.format import load_prm_processor
    from vlprm.prm.settings import training_settings
    from vlprm.training.data import PRMCollator, PRMEncoder
    from vlprm.training.trainer import PRMTrainer

    t0 = time.time()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO,
                        stream=sys.stdout)
    transformers.utils.logging.set_verbosity(args.get_process_log_level())
    logging.getLogger("vlprm").setLevel(logging.INFO if args.should_log else logging.WARNING)
    prepare_training_args(args)
    if cfg.wandb_project:
        os.environ.setdefault("WANDB_PROJECT", cfg.wandb_project)
    set_seed(args.seed)

    processor = load_prm_processor(cfg.model_name_or_path, cfg.min_pixels, cfg.max_pixels)
    fmt = training_settings(cfg.dataset, cfg.system_prompt, cfg.step_suffix, min_pixels=cfg.min_pixels,
                            max_pixels=cfg.max_pixels)
    encoder = PRMEncoder(processor, settings=fmt, max_length=cfg.max_length,
                         label_mode=cfg.label_mode)
    train_ds, eval_ds = build_datasets(cfg, args, encoder)
    model = load_model(cfg, args)
    trainable, total = count_parameters(model)
    logger.info("model %s: %.1fM of %.1fM parameters trainable; label mode %s; system prompt %r",
                cfg.model_name_or_path, trainable / 1e6, total / 1e6, cfg.label_mode, cfg.system_prompt)

    if eval_ds is None and str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no":
        logger.warning("no validation data (--eval_dataset / --eval_fraction): evaluation during training is off")
        args.eval_strategy = "no"
    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = PRMTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=PRMCollator(pad_token_id=pad_id, plus_id=encoder.tokens.plus_id),
        processing_class=processor, plus_id=encoder.tokens.plus_id, minus_id=encoder.tokens.minus_id,
        label_mode=cfg.label_mode,
    )
    with args.main_process_first(desc="resume checkpoint"):  # the main rank sets torn ones aside first
        resume = resolve_resume(args.resume_from_checkpoint, args.output_dir, set_aside_torn=args.should_save)
    t_train = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    train_time = time.time() - t_train
    eval_metrics = trainer.evaluate() if eval_ds is not None else {}
    trainer.save_state()  # output_dir/trainer_state.json: the whole log history, final eval included
    save_final(trainer, cfg, processor, encoder)

    summary = {
        "model": cfg.model_name_or_path, "output_dir": args.output_dir,
        "train_samples": len(train_ds), "train_skipped": train_ds.num_skipped,
        "train_skip_reasons": train_ds.skip_counts(),
        "eval_samples": len(eval_ds) if eval_ds else 0, "eval_skipped": eval_ds.num_skipped if eval_ds else 0,
        "eval_skip_reasons": eval_ds.skip_counts() if eval_ds else {},
        "global_step": trainer.state.global_step, "epochs": float(trainer.state.epoch or 0.0),
        "resumed_from": resume, "train_loss": float(result.training_loss),
        "loss_curve": _loss_curve(trainer.state.log_history),
        "eval_metrics": {k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))},
        "train_time_s": train_time, "total_time_s": time.time() - t0,
        "trainable_params": trainable, "total_params": total,
    }
    if trainer.is_world_process_zero():
        Path(args.output_dir, SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        print(format_summary(summary), flush=True)
    return summary
