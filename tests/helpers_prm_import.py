"""Fixtures in the released PRM training-set formats (written here; nothing is downloaded).

VL-PRM300K's training version: rows with `messages` ({"role", "content": [parts]}) and the image
in `image` (one) or `images` (several), as parquet (images as {"bytes", "path"} structs, the
datasets Image form) and JSONL (paths). VisualPRM400K: InternVL-style JSONL rows with
`conversations` ({"from", "value"}), "<image>" placeholders and `image` paths.
Every step keeps the "\\n\\n" that ends it, as the released data does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

SYSTEM = ("You are a process supervision model for visual reasoning tasks. Judge each step: "
          "\"+\" if correct up to this step, \"-\" otherwise.")
SUFFIX = "\n\n"


def _png(path: Path, colour, size=(40, 30)) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((5, 5, size[0] - 5, size[1] - 5), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def vlprm_messages(question: str, steps: list[str], labels: list[str], n_images: int = 1,
                   system: str | None = SYSTEM) -> list[dict]:
    """A VL-PRM conversation (TRL messages form); steps are given with their "\\n\\n"."""
    msgs = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system is not None else []
    first = [{"type": "image"} for _ in range(n_images)]
    first.append({"type": "text", "text": f"### Question:\n{question}\n\n### Solution Process:\n{steps[0]}"})
    msgs.append({"role": "user", "content": first})
    for k, (step, lab) in enumerate(zip(steps, labels)):
        if k:
            msgs.append({"role": "user", "content": [{"type": "text", "text": step}]})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": lab}]})
    return msgs


# (question, steps, labels): the second ends at its first "-", as the released data does.
GOOD = [
    ("What colour is the square? Options: (A) red (B) blue",
     ["The image shows one square.\n\n", "Its fill is red, so x-1 = 0 for x = 1.\n\n",
      "- a bullet line\n- another one\n\nThe answer is \\boxed{A}.\n\n"], ["+", "+", "+"]),
    ("How many shapes are there in both images?",
     ["The first image has 2 shapes.\n\n", "3 + 4 = 8 shapes in total.\n\n"], ["+", "-"]),
    ("Is the left figure larger?", ["The left figure is larger: yes.\n\n"], ["-"]),
]


def write_vlprm_parquet(root: Path) -> Path:
    """VL-PRM300K-style parquet: 3 good rows (one with 2 images) + 3 bad ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = _png(root / "src" / "a.png", "red")
    b = _png(root / "src" / "b.png", "blue", (30, 50))
    rows = []
    for i, (q, steps, labels) in enumerate(GOOD):
        n_img = 2 if i == 1 else 1
        rows.append({"id": f"vl{i}", "messages": vlprm_messages(q, steps, labels, n_img),
                     "images": [{"bytes": a, "path": "a.png"}, {"bytes": b, "path": "b.png"}][:n_img]})
    q, steps, labels = GOOD[0]
    rows.append({"id": "vl-noimage", "messages": vlprm_messages(q, steps, labels, 0), "images": []})
    bad_label = vlprm_messages(q, steps, labels)
    bad_label[2]["content"][0]["text"] = "correct"
    rows.append({"id": "vl-badlabel", "messages": bad_label, "images": [{"bytes": a, "path": "a.png"}]})
    swapped = vlprm_messages(q, steps, labels)
    swapped[2], swapped[3] = swapped[3], swapped[2]  # a user turn where a label belongs
    rows.append({"id": "vl-order", "messages": swapped, "images": [{"bytes": a, "path": "a.png"}]})
    table = pa.Table.from_pylist(rows)
    path = root / "src" / "vlprm.parquet"
    pq.write_table(table, path)
    return path


def write_visualprm_jsonl(root: Path) -> Path:
    """VisualPRM400K-style JSONL: 2 good rows + 2 bad ones (unlabelled last step, missing image)."""
    _png(root / "vp" / "images" / "c.png", "green")
    _png(root / "vp" / "images" / "d.png", "purple")

    def conv(q, steps, labels, n_img=1, last_label=True):
        turns = [{"from": "system", "value": SYSTEM},
                 {"from": "human", "value": "<image>\n" * n_img + f"### Question:\n{q}\n\n### Solution Process:\n{steps[0]}"}]
        for k, (s, lab) in enumerate(zip(steps, labels)):
            if k:
                turns.append({"from": "human", "value": s})
            turns.append({"from": "gpt", "value": lab})
        return turns if last_label else turns[:-1]

    q0, s0, l0 = GOOD[0]
    q1, s1, l1 = GOOD[1]
    rows = [{"id": "vp0", "image": "images/c.png", "conversations": conv(q0, s0, l0)},
            {"id": "vp1", "image": ["images/c.png", "images/d.png"], "conversations": conv(q1, s1, l1, 2)},
            {"id": "vp-unlabelled", "image": "images/c.png", "conversations": conv(q0, s0, l0, last_label=False)},
            {"id": "vp-missing", "image": "images/nope.png", "conversations": conv(q0, s0, l0)}]
    path = root / "vp" / "annotations" / "part1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken json\n")
    # Images of InternVL annotations live next to the annotation dir: --image-root points there.
    return path.parent


def write_vlprm_jsonl(root: Path) -> Path:
    """The VL-PRM layout as JSONL with image paths (messages with content parts)."""
    _png(root / "vlj" / "e.png", "orange")
    q, steps, labels = GOOD[1]
    msgs = vlprm_messages(q, steps, labels, 1)
    path = root / "vlj" / "train.jsonl"
    path.write_text(json.dumps({"id": "vlj0", "messages": msgs, "image": "e.png"}) + "\n")
    return path
