"""Write a small PRM export directory (docs/CONTRACTS.md format) from generated images.

    from helpers_prm_data import write_prm_export
    export_dir = write_prm_export(tmp_path / "prm", n_samples=16)

Labels are learnable from the text: the first step that contains `keyword` is the first error,
so it and every later step are "-" (the PRM convention), earlier steps "+". Questions and steps
contain literal "+" and "-" characters, so a mask built by token id instead of by position would
train on them. soft_labels are MC-style ratios k/8 consistent with the hard labels.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
_GOOD_STEPS = (
    "Count the {color} {shape}s in each row: 1+2 = 3.",
    "The image shows {n} {shape}s, so the sum is {n} + 0 = {n}.",
    "Subtract the small ones: {n}-1 = {m}.",
    "Each row has the same number of {shape}s.",
    "The {color} shape is at the top left of the grid.",
)
_BAD_STEPS = (
    "This count is wrong: {n}+1 = {m}.",
    "The {color} {shape} is wrong, it is at the bottom - not the top.",
)
_FINAL = "Therefore the final answer is \\boxed{{{n}}}."


def _draw(path: Path, rng: random.Random, color: str, shape: str, size: tuple[int, int]) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    w, h = size
    for _ in range(rng.randint(1, 4)):
        x, y = rng.randint(0, w - 16), rng.randint(0, h - 16)
        box = (x, y, x + 14, y + 14)
        if shape == "circle":
            d.ellipse(box, fill=color)
        elif shape == "square":
            d.rectangle(box, fill=color)
        else:
            d.polygon([(x, y + 14), (x + 7, y), (x + 14, y + 14)], fill=color)
    img.save(path)


def make_rows(n_samples: int, seed: int = 0, keyword_rate: float = 0.5, steps: tuple[int, int] = (2, 4),
              image_sizes: tuple[tuple[int, int], ...] = ((56, 56), (84, 56), (56, 84))) -> list[dict]:
    """The rows of an export (without writing images): id, question, steps, labels, soft_labels,
    images (relative paths images/<id>.png) and the contract's extra keys."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_samples):
        color, shape = rng.choice(COLORS), rng.choice(SHAPES)
        n = rng.randint(2, 9)
        fmt = {"color": color, "shape": shape, "n": n, "m": n - 1}
        k = rng.randint(*steps)
        texts = [rng.choice(_GOOD_STEPS).format(**fmt) for _ in range(k - 1)] + [_FINAL.format(**fmt)]
        first_error = -1
        if rng.random() < keyword_rate:
            first_error = rng.randrange(k)
            texts[first_error] = rng.choice(_BAD_STEPS).format(**fmt)
        labels = ["+" if first_error < 0 or j < first_error else "-" for j in range(k)]
        soft = [rng.choice([6, 7, 8]) / 8 if lab == "+" else rng.choice([0, 1, 2]) / 8 for lab in labels]
        sid = f"s{i:04d}"
        rows.append({
            "id": sid,
            "question": f"How many {color} {shape}s are there? Compute 3+4-2 and pick (A) +1 or (B) -1.",
            "steps": texts, "images": [f"images/{sid}.png"], "labels": labels, "soft_labels": soft,
            "problem_id": f"p{i // 2:04d}", "solution_id": sid, "label_view": "mc_hard",
            "first_error_step": first_error, "error_kind": "reasoning" if first_error >= 0 else None,
            "benchmark": "synthetic", "_image": {"color": color, "shape": shape,
                                                 "size": list(image_sizes[i % len(image_sizes)])},
        })
    return rows


def write_prm_export(out_dir, n_samples: int = 16, seed: int = 0, *, keyword_rate: float = 0.5,
                     steps: tuple[int, int] = (2, 4), with_hf: bool = False,
                     unreadable: tuple[str, ...] = ()) -> Path:
    """Write DIR/prm.jsonl, DIR/images/*.png (and DIR/hf/ with `with_hf`); return DIR.

    `unreadable`: ids whose image file is written as garbage bytes (to test skipping).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    rows = make_rows(n_samples, seed, keyword_rate, steps)
    for row in rows:
        meta = row.pop("_image")
        path = out / row["images"][0]
        if row["id"] in unreadable:
            path.write_bytes(b"not an image")
        else:
            _draw(path, rng, meta["color"], meta["shape"], tuple(meta["size"]))
    with open(out / "prm.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if with_hf:
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(out / "hf"))
    return out
