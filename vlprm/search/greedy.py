"""Greedy step search: at every step sample n candidate next steps, keep the one the PRM likes
best (when all are judged wrong, the least-bad one), until the solution ends. "Best" is
`SearchConfig.choice`: the top `aggregation` score, or the VL-PRM authors' rule.

The loop is shared with DVTS (`vlprm.search.dvts`), which runs several such greedy subtrees.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlprm.backends.base import Generator
from vlprm.prm.scorer import Scorer
from vlprm.search.base import (
    Path, ProblemRun, SearchConfig, SearchResult, choose_index, expand, score_paths,
)


def greedy_subtrees(problems: Sequence[Any], generator: Generator, scorer: Scorer, config: SearchConfig,
                    n_subtrees: int, per_subtree: int) -> list[tuple[ProblemRun, list[Path], list[list[Path]], int]]:
    """Grow n_subtrees independent greedy paths per problem, each from per_subtree candidates a step.

    Returns per problem: (run, the subtrees' final paths, each subtree's last candidate set,
    iterations run).
    """
    runs = [ProblemRun(p, config) for p in problems]
    leaves = [[Path() for _ in range(n_subtrees)] for _ in runs]
    last_siblings: list[list[list[Path]]] = [[[] for _ in range(n_subtrees)] for _ in runs]
    iterations = [0] * len(runs)
    it = 0
    while True:
        items = [(runs[r], leaves[r][j], j) for r in range(len(runs)) for j in range(n_subtrees)
                 if not leaves[r][j].done]
        where = [(r, j) for r in range(len(runs)) for j in range(n_subtrees) if not leaves[r][j].done]
        if not items:
            break
        children = expand(items, per_subtree, generator, config, it)
        score_paths([(runs[r], c) for (r, _), cs in zip(where, children) for c in cs], scorer, config)
        for (r, j), cs in zip(where, children):
            run = runs[r]
            iterations[r] = it + 1
            if not cs:  # the policy request failed: this subtree ends where it is
                leaves[r][j].finish_reason = "error"
                continue
            k = choose_index(cs, config)
            scores = [c.score for c in cs]
            below = all(s is None or s < config.threshold for s in scores)
            run.trace.append({"iteration": it, "subtree": j, "scores": scores, "chosen": k,
                              "all_below_threshold": below, "finish_reason": cs[k].finish_reason})
            leaves[r][j] = cs[k]
            last_siblings[r][j] = cs
        it += 1
    return [(runs[r], leaves[r], last_siblings[r], iterations[r]) for r in range(len(runs))]


def greedy_search(problems: Sequence[Any], generator: Generator, scorer: Scorer,
                  config: SearchConfig | None = None, **overrides) -> list[SearchResult]:
    """Greedy step search for each problem (config.n candidates per step).

    The result's candidates are the last step's candidate set (the chosen path among them);
    the chosen solution is the greedy path.
    """
    config = SearchConfig.for_strategy("greedy", config, **overrides)
    out = []
    for run, leaves, siblings, iterations in greedy_subtrees(problems, generator, scorer, config, 1, config.n):
        cands = siblings[0] or leaves
        # The greedy path is the one picked at the last step (by `aggregation`).
        chosen = next(i for i, c in enumerate(cands) if c is leaves[0]) if siblings[0] else 0
        out.append(run.result(config, cands, iterations, chosen=chosen))
    return out


__all__ = ["greedy_search", "greedy_subtrees"]
