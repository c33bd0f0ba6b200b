"""PRM training rows: read a PRM data source into `PRMRecord`s, and split them by problem.

Rows come from a PRM export directory (docs/CONTRACTS.md: `prm.jsonl` or `hf/`), a `datasets`
save_to_disk directory, a JSONL file or a hub dataset id, with the columns question, steps,
images, labels[, soft_labels]. Rows that are not PRM samples are returned as skipped entries.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlprm.prm.format import MINUS, PLUS, PRMSample


@dataclass
class PRMRecord:
    """One training row: the PRM sample, its images resolved to loadable references, and the
    group it belongs to for the validation split (its problem, so that solutions of one problem
    never land on both sides)."""

    sample: PRMSample
    images: list[Any] = field(default_factory=list)
    group: str = ""


def _norm_label(v: Any) -> str | None:
    if v is None or v in (PLUS, MINUS):
        return v
    if isinstance(v, bool) or v in (0, 1):
        return PLUS if v else MINUS
    return v  # left for build_conversation to reject with the sample id


def _resolve_image(ref: Any, bases: Sequence[Path]) -> Any:
    """A path relative to the data directory -> absolute path; bytes/dicts/PIL images as they are."""
    if isinstance(ref, dict):  # a datasets Image feature that was not decoded
        return ref.get("bytes") or ref.get("path")
    if not isinstance(ref, (str, os.PathLike)):
        return ref
    s = os.fspath(ref)
    if s.startswith(("data:", "http://", "https://")) or os.path.isabs(s):
        return s
    for base in bases:
        cand = base / s
        if cand.exists():
            return str(cand)
    return str(bases[0] / s) if bases else s  # missing: the encode check reports it


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() \
        or (path / "state.json").exists()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                rows.append({"_error": f"{path}:{n}: invalid JSON ({e})"})
    return rows


def _load_rows(source: str, split: str) -> tuple[list[dict], list[Path]]:
    """Rows of a data source and the directories relative image paths are resolved against."""
    path = Path(source)
    if path.is_dir():
        if (path / "prm.jsonl").is_file():
            return _read_jsonl(path / "prm.jsonl"), [path]
        hf_dir = path / "hf" if _is_saved_dataset(path / "hf") else path
        if _is_saved_dataset(hf_dir):
            import datasets

            ds = datasets.load_from_disk(str(hf_dir))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ValueError(f"{hf_dir}: no split {split!r} (has {', '.join(ds)}); pass --dataset_split")
                ds = ds[split]
            return [dict(r) for r in _undecoded(ds)], [path, hf_dir, hf_dir.parent]
        raise ValueError(f"{path}: not a PRM export (no prm.jsonl or hf/) nor a datasets save_to_disk dir")
    if path.is_file():
        if path.suffix in (".jsonl", ".json"):
            return _read_jsonl(path), [path.parent]
        raise ValueError(f"{path}: unsupported data file (use .jsonl, an export dir or a hub id)")
    import datasets  # a hub id

    ds = datasets.load_dataset(source, split=split)
    return [dict(r) for r in _undecoded(ds)], []


def _undecoded(ds):
    """Keep embedded images as encoded bytes (decoded only when a sample is encoded)."""
    import copy

    import datasets

    feat = ds.features.get("images")
    inner = getattr(feat, "feature", None)
    if isinstance(inner, datasets.Image) and inner.decode:
        feat = copy.deepcopy(feat)
        feat.feature = datasets.Image(decode=False)
        ds = ds.cast_column("images", feat)
    return ds


def load_prm_records(source: str, split: str = "train", max_samples: int | None = None,
                     ) -> tuple[list[PRMRecord], list[dict]]:
    """Read a PRM data source into records. Rows that are not PRM samples are returned as
    skipped entries ({"id", "reason", "message"}) instead of raising."""
    rows, bases = _load_rows(source, split)
    if max_samples is not None:
        rows = rows[:max_samples]
    name = Path(source).name or source
    records, skipped = [], []
    for i, row in enumerate(rows):
        rid = str(row.get("id") or f"{name}:{i}")
        if "_error" in row:
            skipped.append({"id": rid, "reason": "bad_row", "message": row["_error"]})
            continue
        try:
            labels = row.get("labels")
            sample = PRMSample(
                question=str(row["question"]), steps=[str(s) for s in row["steps"]],
                images=[], labels=[_norm_label(v) for v in labels] if labels is not None else None,
                soft_labels=row.get("soft_labels"), id=rid)
        except (KeyError, TypeError, ValueError) as e:
            skipped.append({"id": rid, "reason": "bad_row", "message": f"{type(e).__name__}: {e}"})
            continue
        images = [_resolve_image(x, bases) for x in (row.get("images") or [])]
        sample.images = [x if isinstance(x, str) else f"<image {k}>" for k, x in enumerate(images)]
        group = str(row.get("problem_id") or rid)
        records.append(PRMRecord(sample=sample, images=images, group=group))
    return records, skipped


def split_by_group(records: Sequence[PRMRecord], fraction: float, seed: int = 0,
                   ) -> tuple[list[PRMRecord], list[PRMRecord]]:
    """Hold out about `fraction` of the records as validation, whole groups (problems) at a time."""
    if fraction <= 0:
        return list(records), []
    groups = sorted({r.group for r in records})
    random.Random(seed).shuffle(groups)
    n_eval = max(1, round(len(groups) * fraction)) if len(groups) > 1 else 0
    held = set(groups[:n_eval])
    return [r for r in records if r.group not in held], [r for r in records if r.group in held]
