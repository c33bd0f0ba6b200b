"""What every step-level search shares: the config, a partial solution (`Path`), expanding paths
with the policy, scoring them with the PRM, and the result record.

A search step is what the policy writes up to the next blank line: each expansion asks the policy
to continue the solution so far (``continue_final_message=True``, stop at "\\n\\n"). A path ends
when the policy ends its answer (end of sequence), writes a boxed answer, writes nothing, runs
out of ``max_step_tokens`` (when ``stop_on_length``) or reaches ``max_steps``.

The PRM scores a path's whole text split into steps the way every other scoring does
(`vlprm.steps.split_steps` with the policy style), so the scores of a searched solution and of a
sampled one mean the same thing. All paths of all problems in a round go to the policy in one
`generate` call and to the PRM in one `score` call.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.data.store import stable_seed
from vlprm.prm.aggregate import AGGREGATIONS, aggregate, vlprm_rule_pick
from vlprm.prm.scorer import Scorer, StepScores, build_prm_sample
from vlprm.prompts import STEP_SEPARATOR, build_policy_messages
from vlprm.search.budget import Budget
from vlprm.steps import split_steps

STRATEGIES = ("greedy", "beam", "dvts")
# How greedy (and each DVTS subtree) picks the next step among its candidates: the top score by
# `aggregation`, or the VL-PRM authors' rule (`vlprm.prm.aggregate.vlprm_rule_pick`).
CHOICES = ("max_score", "vlprm_rule")


@dataclass
class SearchConfig:
    """Hyper-parameters of one step-level search run (every result records the ones it used).

    n: greedy: candidate next steps per iteration; beam: expansions per kept beam; dvts: total
        candidates per iteration, split evenly over the subtrees (n // n_subtrees each).
    beam_width: beam: partial solutions kept per iteration (top by `aggregation`).
    n_subtrees: dvts: independent subtrees, each expanded greedily.
    aggregation: how partial solutions are ranked during the search (`vlprm.prm.aggregate`).
    final_aggregation: how the returned solution is picked among the final candidates.
    threshold: P(+) below it means the PRM judges the step wrong; when every candidate is below
        it, greedy still takes the least-bad one (and the trace says so).
    choice: greedy / DVTS: "max_score" (the top `aggregation` score, the first among equals) or
        "vlprm_rule" (the VL-PRM authors' rule on each candidate's last-step P(+) and PRM input
        tokens: P(+)^0.3 / tokens^0.6 where "+" wins, else the highest P(+)).
    stop_on_length: a step cut at max_step_tokens ends its path (else the search goes on from it).
    dedupe: drop candidates whose text repeats a sibling's.
    """

    strategy: str = "greedy"
    n: int = 4
    beam_width: int = 2
    n_subtrees: int = 2
    max_steps: int = 12
    max_step_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    style: str = "structured"
    aggregation: str = "last"
    final_aggregation: str = "last"
    threshold: float = 0.5
    choice: str = "max_score"
    stop_on_length: bool = True
    dedupe: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("aggregation", "final_aggregation"):
            if getattr(self, name) not in AGGREGATIONS or getattr(self, name) == "outcome":
                raise ValueError(f"{name} must be a step aggregation ({', '.join(a for a in AGGREGATIONS if a != 'outcome')}), "
                                 f"got {getattr(self, name)!r}")
        if self.choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {self.choice!r}")
        if self.n < 1 or self.max_steps < 1 or self.beam_width < 1 or self.n_subtrees < 1:
            raise ValueError("n, max_steps, beam_width and n_subtrees must be >= 1")
        if self.strategy == "dvts" and self.n < self.n_subtrees:
            raise ValueError(f"dvts needs n >= n_subtrees (each subtree expands n // n_subtrees "
                             f"candidates), got n={self.n}, n_subtrees={self.n_subtrees}")

    @classmethod
    def for_strategy(cls, strategy: str, config: "SearchConfig | None" = None, **overrides) -> "SearchConfig":
        """`config` (or the defaults) with overrides applied, for `strategy`."""
        base = dataclasses.asdict(config) if config is not None else {}
        return cls(**{**base, **overrides, "strategy": strategy})

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that define this run (strategy-specific ones only for their strategy)."""
        d = dataclasses.asdict(self)
        if self.strategy != "beam":
            d.pop("beam_width")
        if self.strategy == "beam":
            d.pop("choice")
        if self.strategy != "dvts":
            d.pop("n_subtrees")
        else:
            d["candidates_per_subtree"] = self.n // self.n_subtrees
        return d

    def sampling(self, n: int) -> SamplingConfig:
        return SamplingConfig(n=n, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_tokens=self.max_step_tokens, stop=[STEP_SEPARATOR],
                              repetition_penalty=self.repetition_penalty)


@dataclass
class Path:
    """A partial (or finished) solution: the steps the policy wrote so far and their PRM scores.

    chunks are the generated steps verbatim (joined by a blank line they are the solution text);
    prm_steps are the steps the PRM scored (the text split by `split_steps`); finish_reason is
    None while the path can still grow, else "eos", "answer", "empty", "length", "max_steps" or
    "error".
    """

    chunks: list[str] = field(default_factory=list)
    prm_steps: list[str] = field(default_factory=list)
    step_scores: StepScores | None = None
    score: float | None = None
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return STEP_SEPARATOR.join(self.chunks)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def final_score(self, method: str) -> float | None:
        return aggregate(self.step_scores, method) if self.step_scores is not None and self.step_scores.ok else None

    def to_dict(self, final_aggregation: str | None = None) -> dict:
        d = {"text": self.text, "chunks": list(self.chunks), "steps": list(self.prm_steps),
             "step_scores": self.step_scores.p_plus if self.step_scores else None,
             "prm_tokens": self.step_scores.num_tokens if self.step_scores else 0,
             "score": self.score, "finish_reason": self.finish_reason}
        if final_aggregation:
            d["final_score"] = self.final_score(final_aggregation)
        return d


def rank_key(path: Path) -> float:
    """Higher is better; an unscored path ranks below every scored one."""
    return -math.inf if path.score is None or math.isnan(path.score) else path.score


def best_index(paths: Sequence[Path], key=rank_key) -> int:
    """Index of the top path (the first one among equals: deterministic)."""
    return max(range(len(paths)), key=lambda i: (key(paths[i]), -i))


def choose_index(paths: Sequence[Path], config: SearchConfig) -> int:
    """Index of the candidate greedy keeps, by `config.choice`."""
    if config.choice == "vlprm_rule":
        return vlprm_rule_pick([p.step_scores if p.step_scores is not None and p.step_scores.ok else None
                                for p in paths], threshold=config.threshold)
    return best_index(paths)


@dataclass
class SearchResult:
    """One problem's search outcome, naming the hyper-parameters that produced it."""

    problem_id: str
    strategy: str
    hyperparameters: dict[str, Any]
    text: str
    steps: list[str]
    step_scores: list[float] | None
    score: float | None
    finish_reason: str | None
    candidates: list[dict]
    chosen_index: int | None
    budget: Budget
    iterations: int
    trace: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["budget"] = self.budget.to_dict()
        return d


class ProblemRun:
    """The search state of one problem: its policy prompt, budget, trace and errors."""

    def __init__(self, problem: Any, config: SearchConfig):
        self.problem = problem
        self.messages = build_policy_messages(problem, config.style)
        self.budget = Budget()
        self.trace: list[dict] = []
        self.errors: list[str] = []
        self.started = time.time()

    def result(self, config: SearchConfig, candidates: Sequence[Path], iterations: int,
               chosen: int | None = None) -> SearchResult:
        """Record the outcome; the solution is candidates[chosen], by default the best one by
        the final aggregation."""
        cands = list(candidates)
        if chosen is None and cands:
            chosen = best_index(cands, key=lambda p: _finite(p.final_score(config.final_aggregation)))
        best = cands[chosen] if chosen is not None else Path(finish_reason="error")
        return SearchResult(
            problem_id=str(self.problem.id), strategy=config.strategy, hyperparameters=config.hyperparameters(),
            text=best.text, steps=list(best.prm_steps),
            step_scores=best.step_scores.p_plus if best.step_scores else None,
            score=best.final_score(config.final_aggregation), finish_reason=best.finish_reason,
            candidates=[p.to_dict(config.final_aggregation) for p in cands], chosen_index=chosen,
            budget=self.budget, iterations=iterations, trace=self.trace, errors=self.errors,
            seconds=round(time.time() - self.started, 3))


def _finite(x: float | None) -> float:
    return -math.inf if x is None or math.isnan(x) else x


def prm_steps_of(text: str, style: str) -> list[str]:
    """The steps the PRM scores for a solution text (a header-only text is one step)."""
    steps = [s.text for s in split_steps(text, style)]
    return steps or ([text.strip()] if text.strip() else [])


def _finish(chunk: str, completion, n_chunks: int, config: SearchConfig) -> str | None:
    from vlprm.answers import extract_boxed

    if completion.finish_reason == "length":
        reason = "length" if config.stop_on_length else None
    elif completion.finish_reason == "stop" and completion.stop_reason is None:
        reason = "eos"  # the policy ended its answer (not at the step separator)
    else:
        reason = None
    if chunk and extract_boxed(chunk) is not None:
        return "answer"
    if not chunk:
        return reason or "empty"
    if reason is None and n_chunks >= config.max_steps:
        return "max_steps"
    return reason


def expand(items: Sequence[tuple[ProblemRun, Path, int]], n: int, generator: Generator,
           config: SearchConfig, iteration: int) -> list[list[Path]]:
    """Ask the policy for n next steps of each (run, path, slot); return the children per item.

    One `generate` call for all items. The seed of a request derives from (config.seed, problem
    id, strategy, iteration, slot). Failed requests are recorded in their run's errors and give
    no children.
    """
    requests = []
    for run, path, slot in items:
        seed = stable_seed(config.seed, run.problem.id, config.strategy, iteration, slot)
        if path.chunks:
            prefix = {"role": "assistant", "content": [{"type": "text", "text": path.text + STEP_SEPARATOR}]}
            requests.append(ChatRequest(run.messages + [prefix], continue_final_message=True, seed=seed,
                                        id=f"{run.problem.id}/{iteration}/{slot}"))
        else:
            requests.append(ChatRequest(run.messages, seed=seed, id=f"{run.problem.id}/{iteration}/{slot}"))
    results = generator.generate(requests, config.sampling(n), progress=False) if requests else []
    seen_runs: set[int] = set()
    out: list[list[Path]] = []
    for (run, path, slot), res in zip(items, results):
        if id(run) not in seen_runs:
            run.budget.policy_calls += 1
            seen_runs.add(id(run))
        run.budget.add_generation(res)
        if not res.ok:
            run.errors.append(f"iteration {iteration}, slot {slot}: policy request failed: {res.error}")
            out.append([])
            continue
        children, texts = [], set()
        for c in res.completions:
            chunk = c.text.strip()
            if config.dedupe and chunk in texts:
                continue
            texts.add(chunk)
            chunks = path.chunks + ([chunk] if chunk else [])
            children.append(Path(chunks=chunks, finish_reason=_finish(chunk, c, len(chunks), config)))
        out.append(children)
    return out


def score_paths(items: Sequence[tuple[ProblemRun, Path]], scorer: Scorer, config: SearchConfig) -> None:
    """Score each path's whole text with the PRM (one `score` call) and set its ranking score."""
    todo = []
    for run, path in items:
        path.prm_steps = prm_steps_of(path.text, config.style)
        if path.prm_steps:
            todo.append((run, path))
    if not todo:
        return
    samples = [build_prm_sample(run.problem, path.prm_steps, id=f"{run.problem.id}#{i}")
               for i, (run, path) in enumerate(todo)]
    scores = scorer.score(samples)
    seen_runs: set[int] = set()
    for (run, path), ss in zip(todo, scores):
        if id(run) not in seen_runs:
            run.budget.prm_calls += 1
            seen_runs.add(id(run))
        run.budget.add_prm(ss)
        path.step_scores = ss
        if ss.ok:
            path.score = aggregate(ss, config.aggregation)
        else:
            path.score = None
            run.errors.append(f"PRM could not score a candidate: {ss.error}")


__all__ = ["STRATEGIES", "CHOICES", "SearchConfig", "Path", "SearchResult", "ProblemRun", "Budget", "expand",
           "score_paths", "prm_steps_of", "rank_key", "best_index", "choose_index"]
