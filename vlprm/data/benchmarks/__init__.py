"""Benchmark loaders: each reads a benchmark in its *released* format and returns `Problem`s.

Every loader takes a local path (the directory or file as released) or a datasets hub id
(online use), and returns problems whose `images` are absolute paths of files on disk. Images
that a release embeds as bytes (parquet, hub) are written once to a cache directory
(`{data dir}/_images/` by default) and reused on the next load.

A bad record (missing field, missing or unreadable image, answer not among the options) raises
`BenchmarkFormatError` naming the file, the record and what to do. With `on_error="skip"` it is
skipped instead and listed in a `LoadReport`, so a long run reports it rather than dying:

>>> report = LoadReport("mmmu", "data/MMMU")
>>> problems = load_mmmu("data/MMMU", on_error="skip", report=report)
>>> print(report.summary())

`load_benchmark(name, path_or_hub_id, ...)` dispatches by name (see `BENCHMARKS`).
"""

from __future__ import annotations

import os
from typing import Callable

from vlprm.data.benchmarks.common import (LETTERS, BenchmarkFormatError, BenchmarkNotFoundError, LoadReport,
                                          ProcessBenchSample, infer_answer_type)
from vlprm.data.benchmarks.mathvision import load_mathvision
from vlprm.data.benchmarks.mathvista import load_mathvista
from vlprm.data.benchmarks.mmmu import MMMU_SUBJECTS, load_mmmu
from vlprm.data.benchmarks.puzzles import load_algopuzzlevqa, load_puzzles, load_puzzlevqa
from vlprm.data.benchmarks.visualprocessbench import load_visualprocessbench

__all__ = [
    "BENCHMARKS", "LETTERS", "MMMU_SUBJECTS", "BenchmarkFormatError", "BenchmarkNotFoundError", "LoadReport",
    "ProcessBenchSample", "infer_answer_type", "load_algopuzzlevqa", "load_benchmark", "load_mathvision",
    "load_mathvista", "load_mmmu", "load_puzzles", "load_puzzlevqa", "load_visualprocessbench",
]


BENCHMARKS: dict[str, Callable[..., list]] = {
    "mmmu": load_mmmu,
    "mathvista": load_mathvista,
    "mathvision": load_mathvision,
    "puzzlevqa": load_puzzlevqa,
    "algopuzzlevqa": load_algopuzzlevqa,
    "puzzles": load_puzzles,
    "visualprocessbench": load_visualprocessbench,
}


def load_benchmark(name: str, path_or_hub_id: str | os.PathLike, split: str | None = None,
                   limit: int | None = None, *, report: bool | LoadReport = False, **kw):
    """Load a benchmark by name (one of `BENCHMARKS`).

    Returns list[Problem] (list[ProcessBenchSample] for "visualprocessbench"). Keyword arguments
    go to the loader: on_error ("raise" | "skip"), check_images, image_cache_dir,
    first_n_per_type and puzzles (puzzle sets), subjects (mmmu). report=True returns
    (items, LoadReport); a LoadReport instance is filled in place instead.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    rep = report if isinstance(report, LoadReport) else LoadReport(key, os.fspath(path_or_hub_id))
    items = BENCHMARKS[key](path_or_hub_id, split, limit, report=rep, **kw)
    return (items, rep) if report is True else items
