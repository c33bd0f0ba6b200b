"""Test-time strategies on top of a policy `Generator` and a PRM `Scorer`.

Sampling-based selection (best-of-N, weighted, majority) is in `bon`; step-level search in
`greedy`, `beam` and `dvts` (shared machinery in `base`); compute accounting in `budget`.
`run_search` dispatches on `SearchConfig.strategy`.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlprm.search.base import STRATEGIES, Path, SearchConfig, SearchResult
from vlprm.search.beam import beam_search
from vlprm.search.bon import select_best, select_for_ks, select_majority, select_weighted
from vlprm.search.budget import Budget
from vlprm.search.dvts import dvts_search
from vlprm.search.greedy import greedy_search

_SEARCHES = {"greedy": greedy_search, "beam": beam_search, "dvts": dvts_search}


def run_search(problems: Sequence[Any], generator, scorer, config: SearchConfig) -> list[SearchResult]:
    """Run config.strategy ("greedy", "beam" or "dvts") on every problem; one result each."""
    return _SEARCHES[config.strategy](problems, generator, scorer, config)


__all__ = ["STRATEGIES", "SearchConfig", "SearchResult", "Path", "Budget", "run_search", "greedy_search",
           "beam_search", "dvts_search", "select_best", "select_weighted", "select_majority", "select_for_ks"]
