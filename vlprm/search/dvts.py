"""Diverse verifier tree search (DVTS), as in huggingface/search-and-learn: split the n
candidates of a step over n_subtrees independent subtrees; each subtree is a greedy search that
keeps its best of n // n_subtrees candidates a step. Subtrees start from the same prompt with
different seeds and never compare with each other until the end, which keeps them diverse.
All leaves are returned; the solution is the best leaf by the final aggregation.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlprm.backends.base import Generator
from vlprm.prm.scorer import Scorer
from vlprm.search.base import SearchConfig, SearchResult
from vlprm.search.greedy import greedy_subtrees


def dvts_search(problems: Sequence[Any], generator: Generator, scorer: Scorer,
                config: SearchConfig | None = None, **overrides) -> list[SearchResult]:
    """DVTS for each problem: config.n_subtrees subtrees, config.n // n_subtrees candidates each."""
    config = SearchConfig.for_strategy("dvts", config, **overrides)
    per_subtree = config.n // config.n_subtrees
    return [run.result(config, leaves, iterations)
            for run, leaves, _, iterations in greedy_subtrees(problems, generator, scorer, config,
                                                               config.n_subtrees, per_subtree)]


__all__ = ["dvts_search"]
