"""PRM training data: encode rows with `encode_prm`, skip the bad ones, batch them.

Rows are read by `vlprm.training.records` (`load_prm_records`, `split_by_group`, `PRMRecord`,
re-exported here) from a PRM export directory, a `datasets` save_to_disk directory, a JSONL
file or a hub dataset id. Every row is encoded once before training (`build_prm_dataset`);
rows that cannot be encoded (unreadable image, too long, bad labels) are skipped there, counted
and listed, so nothing fails mid-training. The encode-and-check results are cached per data
fingerprint so other ranks and resumed runs reuse them.

Training targets are built from `label_positions` (the position of each step's label token, found
by `encode_prm` from the turn structure), never by searching for the "+"/"-" token id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from vlprm.prm.format import PLUS, LabelTokens, PRMSample, encode_prm, load_images
from vlprm.prm.settings import PRMSettings
from vlprm.training.records import PRMRecord, load_prm_records, split_by_group  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
NO_SOFT_LABEL = -1.0
INDEX_VERSION = 1
_MAX_IDS_SHOWN = 10


# --------------------------------------------------------------------------- encoding


class SampleSkipped(ValueError):
    """A sample that cannot be trained on; `reason` is a short category for the run summary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PRMEncoder:
    """A PRM record -> model features: `encode_prm` plus the per-step training targets.

    Features: input_ids, attention_mask, label_positions (from encode_prm), step_targets (the
    label token id of each step, or -100 for a step without a label: not trained), step_soft
    (the soft target P(+) of each step, or -1 where there is none / label_mode is hard), the image
    tensors and mm_token_type_ids.
    """

    def __init__(self, processor, *, system_prompt: str | None = "vlprm", max_length: int | None = None,
                 label_mode: str = "hard", settings: PRMSettings | None = None):
        self.processor = processor
        # The PRM format (system prompt, step suffix, label tokens): `settings`, else ours with
        # the prompt spec `system_prompt` (an unknown variant name fails here).
        self.format = settings or PRMSettings.from_spec(system_prompt)
        self.max_length = max_length
        self.label_mode = label_mode
        self.tokens = LabelTokens.for_settings(processor.tokenizer, self.format)

    def settings(self) -> dict:
        """Everything the encoding depends on (for cache fingerprints and vlprm_prm.json)."""
        ip = getattr(self.processor, "image_processor", None)
        tok = self.processor.tokenizer
        return {
            "system_prompt": self.format.system_prompt, "step_suffix": self.format.step_suffix,
            "max_length": self.max_length, "label_mode": self.label_mode,
            "min_pixels": getattr(ip, "min_pixels", None), "max_pixels": getattr(ip, "max_pixels", None),
            "patch_size": getattr(ip, "patch_size", None), "merge_size": getattr(ip, "merge_size", None),
            "vocab": len(tok), "tokenizer": getattr(tok, "name_or_path", ""),
            "chat_template": getattr(self.processor, "chat_template", None) or "",
            "plus_id": self.tokens.plus_id, "minus_id": self.tokens.minus_id,
        }

    def _targets(self, sample: PRMSample) -> tuple[list[int], list[float]]:
        if sample.labels is None or all(v is None for v in sample.labels):
            raise SampleSkipped("no_labels", f"sample {sample.id!r} has no step labels")
        targets = [IGNORE_INDEX if v is None else (self.tokens.plus_id if v == PLUS else self.tokens.minus_id)
                   for v in sample.labels]
        soft = [NO_SOFT_LABEL] * len(sample.steps)
        if self.label_mode == "soft" and sample.soft_labels is not None:
            for k, q in enumerate(sample.soft_labels):
                if q is None or sample.labels[k] is None:
                    continue
                try:
                    q = float(q)
                except (TypeError, ValueError):
                    q = math.nan
                if not 0.0 <= q <= 1.0:  # also catches NaN
                    raise SampleSkipped("bad_soft_label", f"sample {sample.id!r} step {k + 1}: soft label "
                                                          f"{sample.soft_labels[k]!r} is not in [0, 1]")
                soft[k] = q
        return targets, soft

    def __call__(self, record: PRMRecord) -> dict:
        from vlprm.backends.base import ImageLoadError

        sample = record.sample
        targets, soft = self._targets(sample)
        try:
            images = load_images(record.images)
        except ImageLoadError as e:
            raise SampleSkipped("unreadable_image", f"sample {sample.id!r}: {e}") from e
        try:
            enc = encode_prm(self.processor, sample, settings=self.format, tokens=self.tokens,
                             images=images)
        except ValueError as e:
            raise SampleSkipped("encode_error", str(e)) from e
        n = len(enc["input_ids"])
        if self.max_length is not None and n > self.max_length:
            raise SampleSkipped("too_long", f"sample {sample.id!r} has {n} tokens > max_length {self.max_length}")
        for k, (p, t) in enumerate(zip(enc["label_positions"], targets)):
            if t != IGNORE_INDEX and enc["input_ids"][p] != t:  # the rendered label is the target
                raise SampleSkipped("encode_error", f"sample {sample.id!r} step {k + 1}: label token mismatch")
        enc["step_targets"] = targets
        enc["step_soft"] = soft
        return enc


def _check_one(encoder: PRMEncoder, record: PRMRecord) -> tuple[int | None, str | None, str | None]:
    """(length, None, None) for a usable record, else (None, reason, message)."""
    try:
        enc = encoder(record)
        return len(enc["input_ids"]), None, None
    except SampleSkipped as e:
        return None, e.reason, str(e)
    except Exception as e:  # an unexpected processor error must not kill the run either
        return None, "encode_error", f"sample {record.sample.id!r}: {type(e).__name__}: {e}"


_WORKER_ENCODER: PRMEncoder | None = None


def _worker_init(encoder: PRMEncoder) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def _worker_check(record: PRMRecord):
    return _check_one(_WORKER_ENCODER, record)


def fingerprint(records: Sequence[PRMRecord], encoder: PRMEncoder) -> str:
    """A hash of the rows and of every encoder setting that changes what gets skipped."""
    h = hashlib.sha256(json.dumps({"v": INDEX_VERSION, **encoder.settings()}, sort_keys=True,
                                  default=str).encode())
    for r in records:
        s = r.sample
        h.update(json.dumps([s.id, s.question, s.steps, s.labels, s.soft_labels, s.images],
                            default=str).encode())
        for img in r.images:
            if isinstance(img, str) and os.path.exists(img):
                st = os.stat(img)
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def check_records(records: Sequence[PRMRecord], encoder: PRMEncoder, *, num_proc: int = 1,
                  desc: str = "check PRM data") -> tuple[list[int], list[int], list[dict]]:
    """Encode every record once: (kept indices, their lengths, skipped entries)."""
    if num_proc > 1 and len(records) > 1:
        import multiprocessing as mp

        # spawn, not fork: the parent may already run torch thread pools
        with mp.get_context("spawn").Pool(num_proc, initializer=_worker_init, initargs=(encoder,)) as pool:
            results = list(tqdm(pool.imap(_worker_check, records, chunksize=16), total=len(records), desc=desc))
    else:
        results = [_check_one(encoder, r) for r in tqdm(records, desc=desc, disable=len(records) < 200)]
    kept, lengths, skipped = [], [], []
    for i, (n, reason, msg) in enumerate(results):
        if n is None:
            skipped.append({"id": records[i].sample.id, "reason": reason, "message": msg})
        else:
            kept.append(i)
            lengths.append(n)
    return kept, lengths, skipped


def format_skips(skipped: Sequence[dict], total: int, name: str) -> str:
    """One line per reason: count and the first ids."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for s in skipped:
        by_reason[s["reason"]].append(str(s["id"]))
    parts = []
    for reason, ids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(ids[:_MAX_IDS_SHOWN]) + (f", ... (+{len(ids) - _MAX_IDS_SHOWN})"
                                                   if len(ids) > _MAX_IDS_SHOWN else "")
        parts.append(f"  {reason}: {len(ids)} [{shown}]")
    return f"PRM data ({name}): skipped {len(skipped)} of {total} samples\n" + "\n".join(parts)


# --------------------------------------------------------------------------- dataset


class PRMDataset:
    """A map-style dataset of encoded PRM samples (encoded on access, in dataloader workers).

    `lengths[i]` is the token length of item i (for length-grouped sampling). If an item that
    passed the check fails later (an image deleted mid-run), the next item is served instead
    and the failure is logged and counted, so training never stops on one sample.
    """

    def __init__(self, records: Sequence[PRMRecord], encoder: PRMEncoder, lengths: Sequence[int] | None = None,
                 skipped: Sequence[dict] = (), name: str = "train"):
        self.records = list(records)
        self.encoder = encoder
        self.lengths = list(lengths) if lengths is not None else None
        self.skipped = list(skipped)
        self.name = name
        self.late_failures: Counter = Counter()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        n = len(self.records)
        if not -n <= i < n:
            raise IndexError(i)  # iteration over the dataset stops here
        for attempt in range(n):
            rec = self.records[(i + attempt) % n]
            try:
                return self.encoder(rec)
            except Exception as e:
                self.late_failures[rec.sample.id] += 1
                if self.late_failures[rec.sample.id] == 1:
                    logger.warning("PRM data (%s): sample %r failed to encode during training (%s); "
                                   "serving the next sample instead", self.name, rec.sample.id, e)
        raise RuntimeError(f"PRM data ({self.name}): no sample could be encoded")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s["reason"] for s in self.skipped))


def build_prm_dataset(records: Sequence[PRMRecord], encoder: PRMEncoder, *, name: str = "train",
                      pre_skipped: Sequence[dict] = (), cache_dir: str | os.PathLike | None = None,
                      num_proc: int = 1, log: bool = True) -> PRMDataset:
    """Check every record once (or reuse a cached check) and return a dataset of the good ones.

    Skipped samples are logged as a warning with counts per reason and their ids; the full list
    goes to `{cache_dir}/{name}-skipped.jsonl` when a cache dir is given.
    """
    index = None
    cache_file = None
    if cache_dir is not None:
        fp = fingerprint(records, encoder)
        cache_file = Path(cache_dir) / f"{name}-{fp}.json"
        if cache_file.is_file():
            try:
                index = json.loads(cache_file.read_text())
            except json.JSONDecodeError:
                index = None
    if index is None:
        kept, lengths, skipped = check_records(records, encoder, num_proc=num_proc, desc=f"check {name} data")
        index = {"version": INDEX_VERSION, "kept": kept, "lengths": lengths, "skipped": skipped}
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, cache_file)
            all_skipped = list(pre_skipped) + skipped
            if all_skipped:
                with open(cache_file.parent / f"{name}-skipped.jsonl", "w", encoding="utf-8") as f:
                    for s in all_skipped:
                        f.write(json.dumps(s) + "\n")
    skipped = list(pre_skipped) + index["skipped"]
    ds = PRMDataset([records[i] for i in index["kept"]], encoder, index["lengths"], skipped, name)
    total = len(records) + len(pre_skipped)
    if log and skipped:
        msg = format_skips(skipped, total, name)
        if cache_file is not None:
            msg += f"\n  full list: {cache_file.parent / (name + '-skipped.jsonl')}"
        logger.warning(msg)
    if len(ds) == 0:
        raise ValueError(f"PRM data ({name}): none of the {total} samples can be used; "
                         + format_skips(skipped, total, name))
    return ds


# --------------------------------------------------------------------------- batching


@dataclass
class PRMCollator:
    """Pad encoded PRM samples into a batch (right padding with the tokenizer's pad id).

    Batch keys: input_ids, attention_mask, mm_token_type_ids, labels (-100 except at the label
    token of each trained step), soft_targets (the soft P(+) target at those positions, -1 where
    none), label_positions and step_labels (per step: 1 "+", 0 "-", -100 untrained or padding;
    for evaluation), and the images of all samples concatenated in sample order: pixel_values
    (rows of patches) and image_grid_thw (one row per image), as Qwen2.5-VL expects.
    """

    pad_token_id: int
    plus_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        import torch

        b = len(features)
        t = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            t = (t + m - 1) // m * m
        s = max(len(f["label_positions"]) for f in features)
        input_ids = torch.full((b, t), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((b, t), dtype=torch.long)
        mm_token_type_ids = torch.zeros((b, t), dtype=torch.int)
        labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
        soft_targets = torch.full((b, t), NO_SOFT_LABEL, dtype=torch.float)
        label_positions = torch.full((b, s), -1, dtype=torch.long)
        step_labels = torch.full((b, s), IGNORE_INDEX, dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            attention_mask[i, :n] = torch.as_tensor(f["attention_mask"], dtype=torch.long)
            if f.get("mm_token_type_ids") is not None:
                mm_token_type_ids[i, :n] = torch.as_tensor(f["mm_token_type_ids"], dtype=torch.int)
            pos = f["label_positions"]
            label_positions[i, :len(pos)] = torch.as_tensor(pos, dtype=torch.long)
            targets = f.get("step_targets") or [IGNORE_INDEX] * len(pos)
            soft = f.get("step_soft") or [NO_SOFT_LABEL] * len(pos)
            for k, (p, y, q) in enumerate(zip(pos, targets, soft)):
                if y == IGNORE_INDEX:
                    continue
                labels[i, p] = y
                soft_targets[i, p] = q
                step_labels[i, k] = int(y == self.plus_id)
        # Under DeepSpeed bf16 the Trainer casts float inputs to bf16: soft targets keep ~3 significant
        # digits (k/8, k/16 MC ratios exactly), well inside the noise of a Monte Carlo estimate.
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": mm_token_type_ids,
                 "labels": labels, "soft_targets": soft_targets, "label_positions": label_positions,
                 "step_labels": step_labels}
        with_images = [f for f in features if f.get("pixel_values") is not None]
        if with_images:
            batch["pixel_values"] = torch.cat([torch.as_tensor(f["pixel_values"]) for f in with_images])
            batch["image_grid_thw"] = torch.cat([torch.as_tensor(f["image_grid_thw"]) for f in with_images])
        return batch
