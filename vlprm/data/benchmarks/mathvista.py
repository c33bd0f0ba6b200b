"""MathVista loader: the released JSON keyed by pid, the hub parquet layout, or the hub id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vlprm.data.benchmarks.common import (BenchmarkFormatError, LoadReport, _answer_to_letter, _BadLine,
                                          _check_options_type, _collect, _hub_cache, _iter_parquet, _local_split, _hub_rows, _Images,
                                          _is_local, _is_missing, _letters_for, _Raw, _read_json,
                                          _read_queries, _RecordError, _require, _with_checked)
from vlprm.data.schema import Problem


def _mathvista_hint(question_type: str, answer_type: str, precision: Any, unit: Any) -> str:
    """The answer-format hint MathVista's own query adds (which type and how many decimals)."""
    if question_type == "multi_choice":
        return ""
    if answer_type == "integer":
        hint = "Answer with an integer."
    elif answer_type == "float":
        if precision is not None and int(precision) >= 1:
            n = int(precision)
            words = {1: "one", 2: "two", 3: "three"}
            example = "1." + "234567"[:n]
            hint = (f"Answer with a floating-point number with {words.get(n, n)} decimal "
                    f"place{'s' if n > 1 else ''}, e.g. {example}.")
        else:
            hint = "Answer with a floating-point number."
    elif answer_type == "list":
        hint = "Answer with a Python list."
    else:
        hint = ""
    if unit:
        hint = (hint + f" Give the value in {unit}, without the unit in the box.").strip()
    return hint


def _mathvista_convert(raw: _Raw, images: _Images, bases: list[Path]) -> Problem:
    rec = raw.data
    _require(rec, "question", "answer", "question_type")
    pid = str(rec.get("pid") or raw.rid)
    precision = None if _is_missing(rec.get("precision")) else rec.get("precision")
    if isinstance(precision, float) and precision.is_integer():
        precision = int(precision)
    unit = rec.get("unit") or None
    src_meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    qtype, atype = rec["question_type"], rec.get("answer_type") or "text"

    # Prefer the released image file; fall back to the parquet's embedded decoded_image.
    img = rec.get("image")
    if img and isinstance(img, str):
        try:
            path = images.from_path(img, bases)
        except _RecordError:
            if rec.get("decoded_image") is None:
                raise
            path = images.from_value(rec["decoded_image"], pid, bases, "decoded_image")
    elif rec.get("decoded_image") is not None:
        path = images.from_value(rec["decoded_image"], pid, bases, "decoded_image")
    else:
        raise _RecordError("missing required field 'image' (and no 'decoded_image')")

    meta = {**src_meta, "pid": pid, "question_type": qtype, "source_answer_type": atype,
            "precision": precision, "unit": unit, "query": rec.get("query"),
            "answer_hint": _mathvista_hint(qtype, atype, precision, unit)}
    answer = str(rec["answer"]).strip()
    if qtype == "multi_choice":
        choices = rec.get("choices")
        if not choices:
            raise _RecordError("question_type is 'multi_choice' but choices is empty")
        options = _check_options_type(choices)
        _letters_for(options)
        meta["answer_text"] = answer
        return Problem(id=pid, benchmark="mathvista", question=rec["question"], images=[path],
                       options=options, answer=_answer_to_letter(answer, options),
                       answer_type="multiple_choice", metadata=meta)
    if qtype != "free_form":
        raise _RecordError(f"question_type {qtype!r} is neither 'multi_choice' nor 'free_form'")
    # MathVista's "list" answers have no schema type of their own; they are compared as text.
    our_type = atype if atype in ("integer", "float", "text") else "text"
    return Problem(id=pid, benchmark="mathvista", question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=our_type, metadata=meta)


def load_mathvista(path_or_hub_id: str | os.PathLike = "AI4Math/MathVista", split: str | None = None,
                   limit: int | None = None, *, on_error: str = "raise", check_images: bool = True,
                   image_cache_dir: str | os.PathLike | None = None,
                   report: LoadReport | None = None) -> list[Problem]:
    """Load MathVista (default split "testmini").

    Accepts the released JSON (a dict keyed by pid, e.g. `testmini.json` with `images/`; a
    `query.json` pid->query map beside it is merged in), the hub parquet layout
    (`data/{split}-*.parquet`, with `decoded_image`), either file directly, or the hub id.
    Multiple choice answers become option letters (the text stays in metadata["answer_text"]);
    free-form keep precision and unit in metadata, and metadata["answer_hint"] says the format.
    """
    split = split or "testmini"
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        files, bases, images = _local_split(root, [f"{split}.json", f"data/{split}.json", f"{split}-*.parquet",
                                                   f"data/{split}-*.parquet"], "MathVista", split,
                                            image_cache_dir, check_images)

        def raws():
            for f in files:
                if f.suffix == ".json":
                    data = _read_json(f)
                    if not isinstance(data, dict):
                        raise BenchmarkFormatError(f"{f}: expected a JSON object keyed by pid (MathVista "
                                                   f"{split}.json), got {type(data).__name__}")
                    queries = _read_queries(f.parent / "query.json")
                    for key, rec in data.items():
                        if isinstance(rec, dict) and "query" not in rec and key in queries:
                            rec = {**rec, "query": queries[key]}
                        record = rec if isinstance(rec, dict) else _BadLine("the value is not an object")
                        yield _Raw(str(f), f"key {key!r}", str(key), record)
                else:
                    yield from _iter_parquet(f, lambda i, r: r.get("pid", i))
        source = str(root)
    else:
        hub_id = str(path_or_hub_id)
        bases = []
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("pid", i)), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mathvista_convert(_with_checked(r), images, bases), benchmark="mathvista",
                    source=source, on_error=on_error, report=report, limit=limit)
