"""MATH-Vision loader: `{split}.jsonl` as on GitHub, the hub parquet layout, or the hub id."""

from __future__ import annotations

import os
from pathlib import Path

from vlprm.data.benchmarks.common import (LoadReport, _answer_to_letter, _check_bad_line, _check_options_type,
                                          _collect, _hub_cache, _iter_parquet, _local_split, _hub_rows, _Images, _is_local,
                                          _iter_jsonl, _letters_for, _Raw, _RecordError, _require,
                                          infer_answer_type)
from vlprm.data.schema import Problem


def _mathvision_convert(raw: _Raw, images: _Images, bases: list[Path]) -> Problem:
    rec = _check_bad_line(raw)
    _require(rec, "id", "question", "answer")
    rid = str(rec["id"])
    if rec.get("image"):
        try:
            path = images.from_path(rec["image"], bases)
        except _RecordError:
            if rec.get("decoded_image") is None:
                raise
            path = images.from_value(rec["decoded_image"], rid, bases, "decoded_image")
    elif rec.get("decoded_image") is not None:
        path = images.from_value(rec["decoded_image"], rid, bases, "decoded_image")
    else:
        raise _RecordError("missing required field 'image' (and no 'decoded_image')")
    options = _check_options_type(rec.get("options") or [])
    answer = str(rec["answer"]).strip()
    meta = {"level": rec.get("level"), "subject": rec.get("subject"), "solution": rec.get("solution")}
    if options:
        letters = _letters_for(options)
        if answer not in letters:
            # Some releases give the option text; map it, else the record is inconsistent.
            answer = _answer_to_letter(answer, options)
        return Problem(id=rid, benchmark="mathvision", question=rec["question"], images=[path], options=options,
                       answer=answer, answer_type="multiple_choice", metadata=meta)
    return Problem(id=rid, benchmark="mathvision", question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def load_mathvision(path_or_hub_id: str | os.PathLike = "MathLLMs/MathVision", split: str | None = None,
                    limit: int | None = None, *, on_error: str = "raise", check_images: bool = True,
                    image_cache_dir: str | os.PathLike | None = None,
                    report: LoadReport | None = None) -> list[Problem]:
    """Load MATH-Vision (default split "test"): `{split}.jsonl` (GitHub `data/`, images in
    `images/` at the repo root), the hub parquet layout (`data/{split}-*.parquet` with
    `decoded_image`), either file directly, or the hub id.

    A non-empty `options` list makes a multiple-choice problem (answer a letter A-E); an empty
    one is free-form. Options are often also written in the question text; it is kept as is.
    """
    split = split or "test"
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        files, bases, images = _local_split(root, [f"{split}.jsonl", f"data/{split}.jsonl", f"{split}-*.parquet",
                                                   f"data/{split}-*.parquet"], "MathVision", split,
                                            image_cache_dir, check_images)

        def raws():
            for f in files:
                if f.suffix == ".jsonl":
                    yield from _iter_jsonl(f, lambda i, r: r.get("id", f"line{i + 1}"))
                else:
                    yield from _iter_parquet(f, lambda i, r: r.get("id", i))
        source = str(root)
    else:
        hub_id, bases = str(path_or_hub_id), []
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("id", i)), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mathvision_convert(r, images, bases), benchmark="mathvision",
                    source=source, on_error=on_error, report=report, limit=limit)
