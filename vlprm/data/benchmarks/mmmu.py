"""MMMU loader: the hub parquet layout, a flat parquet directory, one file, or the hub id."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any, Iterable

from vlprm.data.benchmarks.common import (image_cache_for, BenchmarkNotFoundError, LoadReport, _collect, _hub_cache, _hub_rows,
                                          _Images, _is_local, _letters_for, _Raw, _read_parquet, _RecordError,
                                          _require, _check_options_type, infer_answer_type)
from vlprm.data.schema import Problem


# The 30 MMMU subjects (hub configs), used when the hub cannot list them.
MMMU_SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory",
    "Basic_Medical_Science", "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science",
    "Design", "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics",
    "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage", "Marketing",
    "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)


_MMMU_IMG_RE = re.compile(r"<image (\d+)>")


def _mmmu_files(root: Path, split: str) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(root.glob(f"*/{split}-*.parquet")) + sorted(root.glob(f"{split}-*.parquet"))
    if not files:
        files = sorted(root.glob("*.parquet"))  # flat directory of parquet files
    if not files:
        raise BenchmarkNotFoundError(f"no MMMU parquet files in {root} (expected {{Subject}}/{split}-*.parquet "
                                "as in the MMMU/MMMU hub repo, or a flat directory of .parquet files)")
    return files


def _mmmu_convert(raw: _Raw, images: _Images, base: Path) -> Problem:
    rec = raw.data
    _require(rec, "id", "question", "answer", "question_type")
    qtype = rec["question_type"]
    opts_raw = rec.get("options")
    try:
        options = ast.literal_eval(opts_raw) if isinstance(opts_raw, str) else list(opts_raw or [])
    except (ValueError, SyntaxError) as e:
        raise _RecordError(f"options {opts_raw!r} is not a Python list literal ({e})") from None
    options = _check_options_type(options)

    # images[k-1] must be <image k>: take image_1..image_7 in order and refuse gaps.
    paths, present = [], []
    for k in range(1, 8):
        v = rec.get(f"image_{k}")
        if v is None:
            continue
        present.append(k)
        paths.append(images.from_value(v, f"{rec['id']}_{k}", [base], what=f"image_{k}"))
    if present != list(range(1, len(present) + 1)):
        raise _RecordError(f"image columns {present} are not contiguous from image_1, so <image k> "
                           "cannot map to images[k-1]")
    text_all = rec["question"] + " " + " ".join(options)
    referenced = sorted({int(k) for k in _MMMU_IMG_RE.findall(text_all)})
    missing = [k for k in referenced if k > len(paths)]
    if missing:
        raise _RecordError(f"question/options reference <image {missing[0]}> but image_{missing[0]} is empty")

    answer = str(rec["answer"]).strip()
    meta = {
        "subject": rec.get("subject") or _mmmu_subject(rec["id"]),
        "subfield": rec.get("subfield"),
        "topic_difficulty": rec.get("topic_difficulty"),
        "img_type": _maybe_literal(rec.get("img_type")),
        "question_type": qtype,
        "explanation": rec.get("explanation"),
        "referenced_images": referenced,
    }
    if qtype == "multiple-choice":
        if not options:
            raise _RecordError("question_type is 'multiple-choice' but options is empty")
        letters = _letters_for(options)
        if answer not in letters:
            raise _RecordError(f"answer {answer!r} is not an option letter {letters[0]}-{letters[-1]}")
        return Problem(id=str(rec["id"]), benchmark="mmmu", question=rec["question"], images=paths,
                       options=options, answer=answer, answer_type="multiple_choice", metadata=meta)
    # Open questions sometimes list several accepted answers as a Python list literal.
    accepted = _maybe_literal(answer)
    if isinstance(accepted, list) and accepted:
        meta["accepted_answers"] = [str(a) for a in accepted]
        answer = str(accepted[0])
    return Problem(id=str(rec["id"]), benchmark="mmmu", question=rec["question"], images=paths,
                   options=None, answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def _mmmu_subject(rid: str) -> str | None:
    m = re.match(r"^(?:validation|dev|test)_(.+)_\d+$", rid)
    return m.group(1) if m else None


def _maybe_literal(x: Any) -> Any:
    if isinstance(x, str) and x.strip().startswith("["):
        try:
            return ast.literal_eval(x)
        except (ValueError, SyntaxError):
            return x
    return x


def load_mmmu(path_or_hub_id: str | os.PathLike = "MMMU/MMMU", split: str | None = None, limit: int | None = None,
              *, subjects: Iterable[str] | None = None, on_error: str = "raise", check_images: bool = True,
              image_cache_dir: str | os.PathLike | None = None, report: LoadReport | None = None) -> list[Problem]:
    """Load MMMU (default split "validation") from the hub layout `{Subject}/{split}-*.parquet`,
    a flat directory of parquet files, one parquet file, or the hub id "MMMU/MMMU".

    Questions keep their `<image k>` tokens and `images[k-1]` is the file of `<image k>`;
    metadata["referenced_images"] lists the k referenced in question and options.
    """
    split = split or "validation"
    subj = set(subjects) if subjects else None
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        base = root if root.is_dir() else root.parent
        images = _Images(image_cache_for(base, image_cache_dir), check_images)

        def raws():
            for f in _mmmu_files(root, split):
                if subj and f.parent.name not in subj and not any(s in f.name for s in subj):
                    continue
                for i, rec in enumerate(_read_parquet(f)):
                    yield _Raw(str(f), f"row {i}", str(rec.get("id", f"{f.stem}:{i}")), rec)
        source = str(root)
    else:
        hub_id, base = str(path_or_hub_id), Path(".")
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)
        names = list(subj) if subj else _hub_configs(hub_id) or list(MMMU_SUBJECTS)

        def raws():
            for name in names:
                for i, rec in enumerate(_hub_rows(hub_id, split, name)):
                    yield _Raw(f"{hub_id}[{name}/{split}]", f"row {i}", str(rec.get("id", f"{name}:{i}")), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mmmu_convert(r, images, base), benchmark="mmmu", source=source,
                    on_error=on_error, report=report, limit=limit)


def _hub_configs(hub_id: str) -> list[str]:
    try:
        import datasets

        return [c for c in datasets.get_dataset_config_names(hub_id) if c != "default"]
    except Exception:  # noqa: BLE001 - fall back to the known subject list
        return []
