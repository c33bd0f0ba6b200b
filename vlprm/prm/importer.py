"""Import a released PRM training set into our PRM dataset directory.

    vlprm import-prm-data --format vl-prm SRC --out DIR      # VL-PRM300K (training version)
    vlprm import-prm-data --format visualprm SRC --out DIR   # VisualPRM400K (conversation version)

Both are multi-turn conversations in the PRM format (`vlprm.prm.format`): an optional system
turn; a user turn with the image(s) and "### Question:\\n{q}\\n\\n### Solution Process:\\n{step 1}";
then alternating assistant "+"/"-" turns and user turns holding the next step. Rows come as
JSONL/JSON or parquet files (SRC: a file, or a directory searched for them), with the turns in
`messages` or `conversations` ({"role", "content"} or {"from", "value"}; content as text or a
list of {"type": "text"/"image"} parts; InternVL's "<image>" placeholders are removed) and the
images in `images` / `image` (paths relative to the row's file or --image-root, bytes, or
{"bytes", "path"} dicts as parquet stores them) or inside the image parts.

DIR gets what `train/sft_qwen.sh` reads (docs/CONTRACTS.md, "PRM dataset on disk"): prm.jsonl,
images/, hf/; plus the dataset's own settings (`vlprm_prm.json`: its system prompt and the step
suffix its steps end with, e.g. "\\n\\n"), which the trainer then trains in and
`vlprm prm-config --from-dataset DIR --out CKPT` writes into a checkpoint released with it.
Steps are stored without that suffix (the format appends it back, byte for byte). Rows that are
not PRM conversations (no image, turns out of order, a label other than "+"/"-", ...) are
skipped and named (file, row, id, reason) in DIR/skipped.jsonl and the summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vlprm.prm.format import MINUS, PLUS, PRMSample
from vlprm.prm.settings import PRMSettings, write_settings

logger = logging.getLogger(__name__)

FORMATS = ("vl-prm", "visualprm")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_FIRST_TURN = re.compile(r"^\s*### Question:[ \t]*\n(?P<q>.*?)\n[ \t]*\n### Solution Process:[ \t]*\n(?P<s>.*)$",
                         re.DOTALL)
_IMAGE_TAG = re.compile(r"<image>\n?")


class BadRow(ValueError):
    """A row that is not a PRM conversation; `reason` is its category in the summary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Conversation:
    """One parsed row: its system prompt, question, raw steps (suffix still on), labels, images."""

    id: str
    system_prompt: str | None
    question: str
    steps: list[str]
    labels: list[str]
    images: list[Any] = field(default_factory=list)
    where: str = ""


# --------------------------------------------------------------------------- reading rows


def data_files(src: Path) -> list[Path]:
    """The data files of SRC: itself, or every JSONL/JSON/parquet file under it, sorted."""
    if src.is_file():
        return [src]
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    raise FileNotFoundError(f"{src}: no such file or directory")


def iter_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(row number, row, error) for each row of a JSONL/JSON/parquet file (1-based numbers)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                n += 1
                yield n, row, None
        return
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        for n, row in enumerate(data if isinstance(data, list) else [data], 1):
            yield n, row, None
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line), None
                except json.JSONDecodeError as e:
                    yield n, None, f"invalid JSON ({e})"


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _turn_text_and_images(content: Any) -> tuple[str, list[Any], int]:
    """(text, image refs given in parts, image parts without a ref) of one turn's content."""
    if content is None:
        return "", [], 0
    if isinstance(content, str):
        return content, [], 0
    texts, refs, bare = [], [], 0
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif part.get("type") == "image" or part.get("image") is not None:
            ref = part.get("image")
            if ref is not None:
                refs.append(ref)
            else:
                bare += 1
        elif part.get("text") is not None:
            texts.append(part["text"])
    return "".join(texts), refs, bare


def parse_conversation(row: dict, rid: str, where: str) -> Conversation:
    """A row -> Conversation; raises BadRow naming what is wrong."""
    turns = row.get("messages") if row.get("messages") is not None else row.get("conversations")
    if isinstance(turns, str):  # some dumps keep the conversation as a JSON string
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError as e:
            raise BadRow("no_conversation", f"messages are not JSON ({e})") from e
    if not isinstance(turns, (list, tuple)) or not turns:
        raise BadRow("no_conversation", "no messages/conversations list")
    parsed = []
    for k, t in enumerate(turns):
        role = _ROLES.get(str(t.get("role", t.get("from", ""))).lower())
        if role is None:
            raise BadRow("turns_out_of_order", f"turn {k + 1} has an unknown role {t.get('role', t.get('from'))!r}")
        parsed.append((role, *_turn_text_and_images(t.get("content", t.get("value")))))
    system = None
    if parsed[0][0] == "system":
        system = parsed.pop(0)[1]
    roles = [r for r, *_ in parsed]
    want = ["user", "assistant"] * (len(parsed) // 2 + 1)
    if not parsed or roles != want[:len(roles)]:
        raise BadRow("turns_out_of_order", f"turns {roles[:6]}{'...' if len(roles) > 6 else ''} do not alternate "
                                           "user/assistant after the system turn")
    if roles[-1] != "assistant":
        raise BadRow("turns_out_of_order", "the last step has no label turn")
    images = list(row["images"]) if row.get("images") is not None else _as_list(row.get("image"))
    part_refs = [ref for _, _, refs, _ in parsed for ref in refs]
    images = part_refs or images
    first = _IMAGE_TAG.sub("", parsed[0][1])
    m = _FIRST_TURN.match(first)
    if not m:
        raise BadRow("bad_first_turn", "the first user turn is not '### Question:\\n...\\n\\n### Solution Process:\\n...'")
    steps = [m.group("s")] + [_IMAGE_TAG.sub("", text) for role, text, *_ in parsed[2::2]]
    labels = [text.strip() for _, text, *_ in parsed[1::2]]
    for k, lab in enumerate(labels):
        if lab not in (PLUS, MINUS):
            raise BadRow("bad_label", f"step {k + 1}: label {lab[:20]!r} is not '+' or '-'")
    if any(refs or bare for _, _, refs, bare in parsed[1:]):
        raise BadRow("image_after_first_turn", "an image appears after the first user turn")
    if not images:
        raise BadRow("no_image", "the row has no image")
    if not all(s.strip() for s in steps):
        raise BadRow("empty_step", "a step is empty")
    return Conversation(id=rid, system_prompt=system, question=m.group("q").strip(), steps=steps, labels=labels,
                        images=images, where=where)


# --------------------------------------------------------------------------- images


def _image_bytes(ref: Any, bases: list[Path]) -> tuple[bytes, str]:
    """(encoded bytes, file extension) of an image reference, checked by a full decode."""
    import io

    from vlprm.backends.base import open_image

    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, str) and ref.startswith("data:"):
        import base64

        ref = base64.b64decode(ref.split(",", 1)[-1])
    if isinstance(ref, (str, os.PathLike)):
        cands = [Path(ref)] if os.path.isabs(ref) else [b / ref for b in bases]
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            raise BadRow("missing_image", f"image {ref} not found (looked in {', '.join(map(str, bases))}); "
                                          "pass --image-root")
        data = path.read_bytes()
    elif isinstance(ref, (bytes, bytearray)):
        data = bytes(ref)
    elif hasattr(ref, "save"):  # a PIL image (a decoded datasets Image)
        buf = io.BytesIO()
        ref.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raise BadRow("unreadable_image", f"unsupported image reference of type {type(ref).__name__}")
    try:
        img = open_image(data)
    except ValueError as e:  # ImageLoadError
        raise BadRow("unreadable_image", str(e)) from e
    return data, "." + (img.format or "png").lower().replace("jpeg", "jpg")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:80] + "_" + hashlib.sha1(s.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- the import


def common_suffix(steps: list[str]) -> str:
    """The whitespace most steps end with ("\\n\\n" for VL-PRM's data, "" when stripped)."""
    ends = Counter(s[len(s.rstrip()):] for s in steps)
    return ends.most_common(1)[0][0] if ends else ""


@dataclass
class ImportResult:
    out: Path
    settings: PRMSettings
    summary: dict


def import_prm_data(src: str | os.PathLike, out: str | os.PathLike, fmt: str, *,
                    image_root: str | os.PathLike | None = None, limit: int | None = None,
                    hf: bool = True) -> ImportResult:
    """Convert a released PRM set (format "vl-prm" or "visualprm") into the PRM dataset dir `out`."""
    from tqdm.auto import tqdm

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    src, out = Path(src), Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    convs: list[tuple[Conversation, list[str]]] = []
    skipped: list[dict] = []
    files = data_files(src)
    seen_ids: set[str] = set()
    bar = tqdm(desc=f"import {fmt}", unit="row")
    for path in files:
        bases = [Path(image_root)] if image_root else []
        bases = list(dict.fromkeys(bases + [path.parent, src if src.is_dir() else src.parent]))
        for n, row, err in iter_rows(path):
            bar.update()
            where = f"{path.name}:{n}"
            rid = str((row or {}).get("id") or f"{path.stem}-{n}")
            try:
                if err:
                    raise BadRow("bad_row", err)
                if rid in seen_ids:
                    raise BadRow("duplicate_id", f"id {rid!r} appeared before")
                conv = parse_conversation(row, rid, where)
                rels = []
                for k, ref in enumerate(conv.images):
                    data, ext = _image_bytes(ref, bases)
                    rel = f"images/{_safe(rid)}_{k}{ext}"
                    (tmp / rel).write_bytes(data)
                    rels.append(rel)
            except BadRow as e:
                skipped.append({"file": str(path), "row": n, "id": rid, "reason": e.reason, "message": str(e)})
                continue
            seen_ids.add(rid)
            convs.append((conv, rels))
            if limit and len(convs) >= limit:
                break
        if limit and len(convs) >= limit:
            break
    bar.close()

    # The dataset's own settings: its system prompt and the suffix its steps end with.
    prompts = Counter(c.system_prompt for c, _ in convs)
    system_prompt = prompts.most_common(1)[0][0] if prompts else None
    suffix = common_suffix([s for c, _ in convs for s in c.steps])
    rows, other_ending = [], 0
    for conv, rels in convs:
        if conv.system_prompt != system_prompt:  # one dataset, one format: never mix two prompts
            skipped.append({"file": conv.where.rsplit(":", 1)[0], "row": int(conv.where.rsplit(":", 1)[1]),
                            "id": conv.id, "reason": "other_system_prompt",
                            "message": "its system prompt differs from the dataset's most common one"})
            for rel in rels:
                (tmp / rel).unlink(missing_ok=True)
            continue
        steps = []
        for s in conv.steps:
            other_ending += s[len(s.rstrip()):] != suffix
            steps.append(s.strip())
        sample = PRMSample(question=conv.question, steps=steps, images=rels, labels=conv.labels, id=conv.id)
        row = sample.to_dict()
        first_error = next((k + 1 for k, lab in enumerate(conv.labels) if lab == MINUS), None)
        row.update(problem_id="q" + hashlib.sha1(conv.question.encode()).hexdigest()[:12], solution_id=conv.id,
                   label_view="released", first_error_step=first_error, error_kind=None, benchmark=fmt,
                   step_kinds=[], source=conv.where)
        rows.append(row)

    with open(tmp / "prm.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(tmp / "skipped.jsonl", "w", encoding="utf-8") as f:
        for s in skipped:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    if hf:
        _save_hf(tmp / "hf", rows)
    settings = PRMSettings(system_prompt=system_prompt, step_suffix=suffix, source=str(out / "vlprm_prm.json"))
    summary = {
        "format": fmt, "source": str(src), "files": len(files), "rows": len(rows) + len(skipped),
        "imported": len(rows), "skipped": len(skipped), "skip_reasons": dict(Counter(s["reason"] for s in skipped)),
        "steps": sum(len(r["steps"]) for r in rows),
        "labels": dict(Counter(lab for r in rows for lab in r["labels"])),
        "images": sum(len(r["images"]) for r in rows),
        "step_suffix": suffix, "steps_with_other_ending": other_ending,
        "system_prompts_seen": len(prompts),
    }
    write_settings(tmp, settings, dataset_format=fmt, dataset_source=str(src), note="settings of the imported "
                   "dataset (no pixel bounds: the checkpoint's own processor bounds apply unless given)")
    (tmp / "import_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return ImportResult(out=out, settings=settings, summary=summary)


def _save_hf(path: Path, rows: list[dict]) -> None:
    """The rows as a datasets save_to_disk (the export's columns; `source` stays in prm.jsonl)."""
    from datasets import Dataset

    from vlprm.synthesis.export import _hf_features

    feats = _hf_features()
    Dataset.from_dict({k: [r.get(k) for r in rows] for k in feats}, features=feats).save_to_disk(
        str(path), num_shards=1 if not rows else None)


def format_summary(res: ImportResult) -> str:
    s = res.summary
    lines = [f"imported {s['imported']} of {s['rows']} rows from {s['files']} file(s) ({s['format']}) -> {res.out}",
             f"  steps {s['steps']}, labels {s['labels']}, images {s['images']}",
             f"  skipped {s['skipped']}: {s['skip_reasons'] or '-'} (each named in {res.out / 'skipped.jsonl'})",
             f"  settings: system prompt {'(template default)' if res.settings.system_prompt is None else repr(res.settings.system_prompt[:60] + '...')}, "
             f"step suffix {res.settings.step_suffix!r} ({s['steps_with_other_ending']} steps ended otherwise)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vlprm import-prm-data", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a JSONL/JSON/parquet file or a directory of them")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--out", required=True, help="output PRM dataset directory (replaced)")
    p.add_argument("--image-root", default=None, help="directory relative image paths are found in "
                                                      "(default: next to each data file)")
    p.add_argument("--limit", type=int, default=None, help="import at most this many rows")
    p.add_argument("--no-hf", action="store_true", help="skip DIR/hf (datasets save_to_disk)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = import_prm_data(args.src, args.out, args.fmt, image_root=args.image_root, limit=args.limit,
                              hf=not args.no_hf)
    except (FileNotFoundError, ValueError) as e:
        print(f"vlprm import-prm-data: {e}", file=sys.stderr)
        return 2
    print(format_summary(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
