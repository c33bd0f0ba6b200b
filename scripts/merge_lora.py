#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and save a full model + processor.

    python scripts/merge_lora.py --base Qwen/Qwen2.5-VL-7B-Instruct \
        --adapter outputs/prm/adapter --out outputs/prm-merged

The result loads with `AutoModelForImageTextToText.from_pretrained(out)` and
`AutoProcessor.from_pretrained(out)`. A vlprm_prm.json next to the adapter (or in its parent,
the training output dir) is copied along, so the scorer uses the training system prompt.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRM_META_FILE = "vlprm_prm.json"


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="base model (dir or hub id) the adapter was trained on")
    p.add_argument("--adapter", required=True, help="LoRA adapter dir (adapter_config.json + weights)")
    p.add_argument("--out", required=True, help="output dir for the merged model")
    p.add_argument("--dtype", default="auto", help="auto (the base's dtype), bfloat16, float16 or float32")
    p.add_argument("--processor", default=None, help="processor source (default: the adapter dir if it has one, "
                                                     "else the base)")
    args = p.parse_args(argv)

    from vlprm.training.lora import merge_lora

    t0 = time.time()
    adapter = Path(args.adapter)
    if not (adapter / "adapter_config.json").is_file():
        p.error(f"{adapter}: no adapter_config.json; pass the LoRA adapter directory")
    out = merge_lora(args.base, adapter, args.out, dtype=args.dtype, processor_from=args.processor)
    for cand in (adapter / PRM_META_FILE, adapter.parent / PRM_META_FILE):
        if cand.is_file() and cand.resolve() != (out / PRM_META_FILE).resolve():
            shutil.copy(cand, out / PRM_META_FILE)
            break
    print(f"merged {adapter} into {args.base} -> {out} ({time.time() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    main()
