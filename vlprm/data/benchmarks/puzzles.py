"""PuzzleVQA / AlgoPuzzleVQA loaders (declare-lab/LLM-PuzzleTest layout), also used for our
generated puzzle sets: a directory of `{puzzle}.json` JSON-lines files."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from vlprm.data.benchmarks.common import (image_cache_for, BenchmarkNotFoundError, LoadReport, _answer_to_letter, _check_bad_line,
                                          _check_options_type, _collect, _hub_cache, _hub_rows, _Images,
                                          _is_local, _iter_jsonl, _letters_for, _Raw, _require,
                                          infer_answer_type)
from vlprm.data.schema import Problem

log = logging.getLogger(__name__)


_PUZZLE_CORE = ("image", "question", "options", "answer", "metadata")


def _json_files(d: Path) -> list[Path]:
    # Names starting with "_" or "." are not puzzle files (caches, manifests).
    return sorted(p for p in list(d.glob("*.json")) + list(d.glob("*.jsonl")) if not p.name.startswith(("_", ".")))


def _looks_like_puzzles(path: Path, lines: int = 5) -> bool:
    """Whether one of the first non-empty lines of a file is a JSON object with a "question"."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            seen = 0
            for line in f:
                if not line.strip():
                    continue
                seen += 1
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                if isinstance(rec, dict) and "question" in rec:
                    return True
                if seen >= lines:
                    break
    except OSError:
        return False
    return False


def _puzzle_dirs_below(root: Path) -> list[Path]:
    """Directories up to two levels below root that hold puzzle files (where the data really is)."""
    found = []
    for d in sorted(p for pat in ("*", "*/*") for p in root.glob(pat) if p.is_dir() and not p.name.startswith(".")):
        if any(_looks_like_puzzles(f) for f in _json_files(d)[:3]):
            found.append(d)
    return found


def _puzzle_files(root: Path) -> list[Path]:
    """The puzzle files of a data directory. Other JSON files there (a repo's configs, when the
    path points at a checkout instead of its data/) are left out with a warning; a directory with
    no puzzle file at all is an error saying where the data files were expected."""
    if root.is_file():
        return [root]
    files = _json_files(root)
    puzzle_files = [f for f in files if _looks_like_puzzles(f)]
    if not puzzle_files:
        below = _puzzle_dirs_below(root)
        where = (f"; the puzzle files are in {', '.join(str(d) for d in below[:3])}: point the path there"
                 if below else "")
        other = f" (not puzzle records: {', '.join(f.name for f in files[:5])})" if files else ""
        raise BenchmarkNotFoundError(f"no puzzle files in {root}{other}: expected JSON-lines files of puzzles "
                                f"(image, question, options, answer) directly in it, e.g. data/triangle.json as in "
                                f"declare-lab/LLM-PuzzleTest{where}")
    for f in files:
        if f not in puzzle_files:
            log.warning("%s: not a puzzle file (no JSON-lines puzzle record in its first lines); left out", f)
    return puzzle_files


def _puzzle_convert(raw: _Raw, images: _Images, bases: list[Path], benchmark: str, puzzle: str,
                    index: int) -> Problem:
    rec = _check_bad_line(raw)
    _require(rec, "image", "question", "answer")
    path = images.from_value(rec["image"], raw.rid, bases)
    options = _check_options_type(rec.get("options") or [])
    meta = dict(rec.get("metadata") or {}) if isinstance(rec.get("metadata"), dict) else {}
    meta.update({k: v for k, v in rec.items() if k not in _PUZZLE_CORE})
    meta.update({"puzzle": puzzle, "index": index})
    answer = str(rec["answer"]).strip()
    if options:
        _letters_for(options)
        meta["answer_text"] = answer
        return Problem(id=raw.rid, benchmark=benchmark, question=rec["question"], images=[path], options=options,
                       answer=_answer_to_letter(answer, options), answer_type="multiple_choice", metadata=meta)
    # Early AlgoPuzzleVQA releases have no options: open-ended answers.
    return Problem(id=raw.rid, benchmark=benchmark, question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def _load_puzzle_dir(benchmark: str, path_or_hub_id, split, limit, *, first_n_per_type, puzzles, on_error,
                     check_images, image_cache_dir, report) -> list[Problem]:
    want = set(puzzles) if puzzles else None
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        data_dir = root if root.is_dir() else root.parent
        images = _Images(image_cache_for(data_dir, image_cache_dir), check_images)
        bases = [data_dir, data_dir.parent]

        def raws():
            for f in _puzzle_files(root):
                puzzle = f.stem
                if want and puzzle not in want:
                    continue
                for n, raw in enumerate(_iter_jsonl(f, lambda i, r, p=puzzle: r.get("id") or f"{p}_{i:04d}")):
                    if first_n_per_type is not None and n >= first_n_per_type:
                        break  # the common subset is the first n records of each file
                    yield raw, puzzle, n
        source = str(root)
    else:
        hub_id, bases = str(path_or_hub_id), []
        split = split or "train"
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            counts: Counter = Counter()
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                puzzle = str(rec.get("puzzle") or rec.get("category") or rec.get("type") or benchmark)
                if want and puzzle not in want:
                    continue
                n = counts[puzzle]
                counts[puzzle] += 1
                if first_n_per_type is not None and n >= first_n_per_type:
                    continue
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("id") or f"{puzzle}_{n:04d}"), rec), puzzle, n
        source = hub_id

    def convert(item):
        raw, puzzle, n = item
        return _puzzle_convert(raw, images, bases, benchmark, puzzle, n)

    # Keep file/line/id on the outer _Raw so errors still name them; carry puzzle and index inside.
    tagged = (_Raw(raw.file, raw.where, raw.rid, (raw, puzzle, n)) for raw, puzzle, n in raws())
    return _collect(tagged, lambda r: convert(r.data), benchmark=benchmark, source=source,
                    on_error=on_error, report=report, limit=limit)


def load_puzzlevqa(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None, *,
                   first_n_per_type: int | None = None, puzzles: Iterable[str] | None = None,
                   on_error: str = "raise", check_images: bool = True,
                   image_cache_dir: str | os.PathLike | None = None, report: LoadReport | None = None,
                   benchmark: str = "puzzlevqa") -> list[Problem]:
    """Load PuzzleVQA (declare-lab/LLM-PuzzleTest, `PuzzleVQA/data`): a directory of
    `{puzzle}.json` JSON-lines files with image paths relative to that directory (or one file).

    Answers become option letters (text kept in metadata["answer_text"]); caption, explanation,
    deduction and any extra fields (our generator's id, family, perception_facts, ...) go to
    metadata, a record's own "metadata" dict is merged in. id is the record's "id" or
    "{puzzle}_{index:04d}". first_n_per_type=50 gives the common subset (first 50 per file).
    """
    return _load_puzzle_dir(benchmark, path_or_hub_id, split, limit, first_n_per_type=first_n_per_type,
                            puzzles=puzzles, on_error=on_error, check_images=check_images,
                            image_cache_dir=image_cache_dir, report=report)


def load_algopuzzlevqa(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None,
                       **kw) -> list[Problem]:
    """Load AlgoPuzzleVQA (`AlgoPuzzleVQA/data`): same layout as PuzzleVQA; the "solution"
    dict goes to metadata. Records without options (early releases) load as free-form."""
    return load_puzzlevqa(path_or_hub_id, split, limit, benchmark="algopuzzlevqa", **kw)


def load_puzzles(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None,
                 **kw) -> list[Problem]:
    """Load our generated puzzle set (`vlprm.puzzles` output, PuzzleVQA format)."""
    return load_puzzlevqa(path_or_hub_id, split, limit, benchmark="puzzles", **kw)
