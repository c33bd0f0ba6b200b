"""Test-time strategies on top of a policy `Generator` and a PRM `Scorer`.

Step-level search in `greedy`, `beam` and `dvts` (shared machinery in `base`); compute
accounting in `budget`. Best-of-N, weighted and majority accuracy over sampled candidates are
metrics (`vlprm.metrics`).
`run_search` dispatches on `SearchConfig.strategy`.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlprm.search.base import STRATEGIES, Path, SearchConfig, SearchResult
from vlprm.search.beam import beam_search
from vlprm.search.budget import Budget
from vlprm.search.dvts import dvts_search
from vlprm.search.greedy import greedy_search

_SEARCHES = {"greedy": greedy_search, "beam": beam_search, "dvts": dvts_search}


def run_search(problems: Sequence[Any], generator, scorer, config: SearchConfig) -> list[SearchResult]:
    """Run config.strategy ("greedy", "beam" or "dvts") on every problem; one result each."""
    return _SEARCHES[config.strategy](problems, generator, scorer, config)


__all__ = ["STRATEGIES", "SearchConfig", "SearchResult", "Path", "Budget", "run_search", "greedy_search",
           "beam_search", "dvts_search"]
