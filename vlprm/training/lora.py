"""LoRA for PRM training (peft) and merging an adapter back into a full model."""

from __future__ import annotations

import os
import re
from pathlib import Path

# The language model's linear layers. The vision tower has gate/up/down_proj too, so the
# default target is a regex on the full module name that stays inside the language model.
LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LANGUAGE_TARGET_REGEX = r".*language_model.*\.(" + "|".join(LANGUAGE_LINEAR) + r")"


def lora_target_modules(spec: str) -> str | list[str]:
    """'language' -> the language-model regex; 'all-linear' as is; 'a,b,c' -> a list; else a regex."""
    spec = spec.strip()
    if spec == "language":
        return LANGUAGE_TARGET_REGEX
    if spec == "all-linear":
        return spec
    if re.fullmatch(r"[\w.,\s]+", spec):
        return [s.strip() for s in spec.split(",") if s.strip()]
    return spec


def apply_lora(model, *, r: int = 64, alpha: int = 128, dropout: float = 0.05, target_modules: str = "language",
               modules_to_save: str | None = None, gradient_checkpointing: bool = False):
    """Wrap `model` in a peft LoRA model; only adapter (and modules_to_save) weights train."""
    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        # Checkpointed blocks need an input that requires grad when the embeddings are frozen.
        model.enable_input_require_grads()
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_target_modules(target_modules),
        modules_to_save=[m.strip() for m in modules_to_save.split(",")] if modules_to_save else None,
        task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, config)


def merge_lora(base: str | os.PathLike, adapter: str | os.PathLike, out: str | os.PathLike, *,
               dtype: str = "auto", processor_from: str | os.PathLike | None = None) -> Path:
    """Load `base`, apply the LoRA `adapter`, merge it and save a full model + processor to `out`.

    The result loads with `AutoModelForImageTextToText.from_pretrained(out)`. The processor is
    taken from `processor_from`, else the adapter dir if it has one, else the base.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(os.fspath(base), dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, os.fspath(adapter))
    model = model.merge_and_unload()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    src = processor_from
    if src is None:
        adapter_dir = Path(os.fspath(adapter))
        has_proc = any((adapter_dir / n).exists() for n in ("processor_config.json", "preprocessor_config.json"))
        src = adapter_dir if has_proc else base
    AutoProcessor.from_pretrained(os.fspath(src)).save_pretrained(out)
    return out
