"""Write puzzles in the PuzzleVQA on-disk layout; the ``python -m vlprm.puzzles`` CLI.

Layout written under ``out_dir``::

    {family}.json                      one JSON record per line
    images/{family}/{family}_{i:04d}.png

Each line has the official PuzzleVQA fields (image, question, options, answer, caption,
explanation, deduction) plus ours: perception_facts, reasoning_steps, family, id, source, kind,
metadata. Output depends only on (seed, n, types): same inputs, byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

from vlprm.puzzles.base import (
    FAMILIES, SOURCE, Puzzle, PuzzleCheckError, finalize, item_rng, png_bytes,
)

MAX_ATTEMPTS = 200  # re-draws per item before a family is declared exhausted


def _load_families() -> None:
    # Importing the family modules registers them; done lazily so `base` stays import-light.
    from vlprm.puzzles import abstract, algorithmic  # noqa: F401


def item_id(family: str, index: int) -> str:
    return f"{family}_{index:04d}"


def resolve_types(types=None) -> list[str]:
    """Validate family names (default: all, in registry order)."""
    _load_families()
    if not types:
        return list(FAMILIES)
    unknown = [t for t in types if t not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown puzzle families {unknown}; run `python -m vlprm.puzzles list` "
                         f"to see the {len(FAMILIES)} available ones")
    return list(dict.fromkeys(types))


def make_puzzle(family: str, seed: int, index: int, attempt: int = 0) -> Puzzle:
    """Generate and self-check one puzzle (options shuffled) without writing anything."""
    _load_families()
    fam = FAMILIES[family]
    rng = item_rng(seed, family, index, attempt)
    return finalize(fam, fam(rng), rng)


def to_record(family: str, index: int, puzzle: Puzzle) -> dict:
    """The JSONL record for a puzzle; ``image`` is relative to the output directory."""
    fam = FAMILIES[family]
    iid = item_id(family, index)
    return {
        "image": f"images/{family}/{iid}.png",
        "question": puzzle.question,
        "options": puzzle.options,
        "answer": puzzle.answer,
        "caption": puzzle.caption,
        "explanation": puzzle.explanation,
        "deduction": puzzle.deduction,
        "perception_facts": puzzle.perception_facts,
        "reasoning_steps": puzzle.reasoning_steps,
        "family": family,
        "id": iid,
        "source": SOURCE,
        "kind": fam.kind,
        "metadata": puzzle.metadata,
    }


def generate_family(family: str, count: int, seed: int):
    """Yield (index, record, png) for items 0..count-1 of one family, de-duplicated.

    Two items are duplicates when question, answer and image bytes all match; a duplicate is
    re-drawn with the next attempt number, so item i never depends on how many items follow it.
    """
    seen: set[tuple[str, str, str]] = set()
    for index in range(count):
        for attempt in range(MAX_ATTEMPTS):
            puzzle = make_puzzle(family, seed, index, attempt)
            png = png_bytes(puzzle.image)
            key = (puzzle.question, puzzle.answer, hashlib.sha256(png).hexdigest())
            if key not in seen:
                seen.add(key)
                break
        else:
            raise PuzzleCheckError(f"{family}: no new distinct puzzle for item {index} after "
                                   f"{MAX_ATTEMPTS} attempts; ask for fewer items of this family")
        yield index, to_record(family, index, puzzle), png


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def plan(n: int, types: list[str]) -> Counter:
    """Items per family when n puzzles are spread round-robin over types."""
    return Counter({t: n // len(types) + (1 if i < n % len(types) else 0)
                    for i, t in enumerate(types)})


def generate_puzzles(out_dir, n: int, seed: int = 0, types=None, progress: bool = False,
                     summary: dict | None = None) -> list[dict]:
    """Write ``n`` puzzles, round-robin over ``types`` (default: all families), to ``out_dir``.

    Returns the records in round-robin order. A family that fails is reported on stderr,
    counted in ``summary["failures"]`` (if a dict is given) and skipped; the other families are
    still written. Stale images of a written family (from an earlier, larger run) are removed so
    the directory matches its JSON files.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    types = resolve_types(types)
    counts = plan(n, types) if types else Counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_family: dict[str, list[dict]] = {}
    failures: dict[str, str] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="puzzles", unit="item", disable=None)
    for family in types:
        if counts[family] == 0:
            continue
        img_dir = out / "images" / family
        img_dir.mkdir(parents=True, exist_ok=True)
        records: list[dict] = []
        try:
            for _, record, png in generate_family(family, counts[family], seed):
                _write_bytes(out / record["image"], png)
                records.append(record)
                if bar is not None:
                    bar.update(1)
        except Exception as exc:  # a generator bug must not lose the other families
            failures[family] = f"{type(exc).__name__}: {exc}"
            print(f"[vlprm.puzzles] {family}: failed at item {len(records)} ({failures[family]}); "
                  f"skipping the family, its items are not written", file=sys.stderr)
            continue
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        _write_bytes(out / f"{family}.json", lines.encode("utf-8"))
        keep = {Path(r["image"]).name for r in records}
        for stale in img_dir.iterdir():
            if re.fullmatch(rf"{re.escape(family)}_\d{{4,}}\.png", stale.name) and \
                    stale.name not in keep:
                stale.unlink()
        by_family[family] = records
    if bar is not None:
        bar.close()
    if summary is not None:
        summary["failures"] = failures
        summary["counts"] = {f: len(r) for f, r in by_family.items()}
    # Interleave back into round-robin order.
    ordered = []
    for k in range(max((len(r) for r in by_family.values()), default=0)):
        for family in types:
            recs = by_family.get(family, [])
            if k < len(recs):
                ordered.append(recs[k])
    return ordered


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vlprm.puzzles",
        description="Procedural PuzzleVQA / AlgoPuzzleVQA-style puzzles (offline, seeded).")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write puzzles in the PuzzleVQA on-disk layout",
                       description="Write N puzzles, spread round-robin over the chosen "
                                   "families, as {family}.json + images/{family}/*.png.")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--n", type=int, required=True, help="total number of puzzles")
    g.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    g.add_argument("--types", nargs="+", metavar="FAMILY",
                   help="families to generate (default: all; see `list`)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub.add_parser("list", help="list the puzzle families")
    return p


def _cmd_list() -> int:
    _load_families()
    width = max(len(n) for n in FAMILIES)
    for kind in ("abstract", "algorithmic"):
        names = [f for f in FAMILIES.values() if f.kind == kind]
        print(f"{kind} ({len(names)}):")
        for fam in names:
            print(f"  {fam.name:<{width}}  {fam.n_options} options  {fam.description}")
    return 0


def _cmd_generate(args) -> int:
    try:
        types = resolve_types(args.types)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.n < 0:
        print("error: --n must be >= 0", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary: dict = {}
    records = generate_puzzles(args.out, args.n, args.seed, types,
                               progress=not args.no_progress, summary=summary)
    dt = time.perf_counter() - t0
    print(f"wrote {len(records)} puzzles to {Path(args.out).resolve()} "
          f"(seed {args.seed}, {dt:.1f} s)")
    for family, count in summary["counts"].items():
        print(f"  {family:<24} {count:>5}  ({FAMILIES[family].kind})")
    if summary["failures"]:
        print(f"{len(summary['failures'])} families failed:")
        for family, reason in summary["failures"].items():
            print(f"  {family}: {reason}")
        return 1
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _cmd_list()
    return _cmd_generate(args)
