"""Step-level beam search: keep beam_width partial solutions; expand each with n candidate next
steps; keep the top beam_width of all candidates by the PRM (`aggregation`). A kept candidate
that is finished leaves the beam for the completed list, so the beam narrows as solutions end.
The solution is the best completed one by the final aggregation.
"""

from __future__ import annotations

from typing import Any, Sequence

from vlprm.backends.base import Generator
from vlprm.prm.scorer import Scorer
from vlprm.search.base import (
    Path, ProblemRun, SearchConfig, SearchResult, expand, rank_key, score_paths,
)


def beam_search(problems: Sequence[Any], generator: Generator, scorer: Scorer,
                config: SearchConfig | None = None, **overrides) -> list[SearchResult]:
    """Beam search for each problem (config.beam_width beams, config.n expansions per beam)."""
    config = SearchConfig.for_strategy("beam", config, **overrides)
    runs = [ProblemRun(p, config) for p in problems]
    beams: list[list[Path]] = [[Path()] for _ in runs]
    completed: list[list[Path]] = [[] for _ in runs]
    iterations = [0] * len(runs)
    it = 0
    while any(beams):
        items = [(runs[r], b, j) for r in range(len(runs)) for j, b in enumerate(beams[r])]
        owners = [r for r in range(len(runs)) for _ in beams[r]]
        children = expand(items, config.n, generator, config, it)
        pool: list[list[Path]] = [[] for _ in runs]
        for r, cs in zip(owners, children):
            pool[r].extend(cs)
        for r in range(len(runs)):  # siblings from different beams can coincide: keep one
            seen, uniq = set(), []
            for c in pool[r]:
                if not config.dedupe or c.text not in seen:
                    seen.add(c.text)
                    uniq.append(c)
            pool[r] = uniq
        score_paths([(runs[r], c) for r in range(len(runs)) for c in pool[r]], scorer, config)
        for r in range(len(runs)):
            if not beams[r]:
                continue
            iterations[r] = it + 1
            order = sorted(range(len(pool[r])), key=lambda i: (rank_key(pool[r][i]), -i), reverse=True)
            kept = order[:config.beam_width]
            runs[r].trace.append({"iteration": it, "expanded": len(beams[r]),
                                  "scores": [c.score for c in pool[r]], "kept": kept,
                                  "finished": [i for i in kept if pool[r][i].done]})
            if not pool[r]:  # every policy request failed
                for b in beams[r]:
                    b.finish_reason = "error"
                completed[r].extend(beams[r])
                beams[r] = []
                continue
            completed[r].extend(pool[r][i] for i in kept if pool[r][i].done)
            beams[r] = [pool[r][i] for i in kept if not pool[r][i].done]
        it += 1
    return [run.result(config, completed[r], iterations[r]) for r, run in enumerate(runs)]


__all__ = ["beam_search"]
