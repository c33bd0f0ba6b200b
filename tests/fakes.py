"""Test fakes: stand-ins for what cannot run here, shared by the tests and `scripts/bench/`.

`SimulatedPolicy` is a policy whose step correctness is known (for the MC labelling tests and the
MC cost bench, which imports it from here).
"""

from __future__ import annotations

from vlprm.backends.base import Generator


class SimulatedPolicy(Generator):
    """A policy whose step correctness is known, for tests and `scripts/bench/mc_cost.py`.

    A step is wrong when its text contains `marker`. Fresh requests (no partial answer) get
    structured solutions of 3..max_steps steps; with probability p_error a solution has a first
    error at a random step, and every step from it on carries the marker and ends in a wrong
    answer. A continuation of a prefix reaches the right answer with probability p_good when the
    prefix has no wrong step and p_bad otherwise, and ends in \\boxed{right} or \\boxed{wrong}.
    `answers` maps a question text or an image path to the right answer (an option letter); the
    wrong one is the next letter. Deterministic given the request seeds. `calls` records each generate() call's
    (number of requests, total n).
    """

    name = "simulated"

    def __init__(self, answers: dict[str, str], *, p_good: float = 0.7, p_bad: float = 0.0, p_error: float = 0.6,
                 max_steps: int = 8, marker: str = "[wrong]", model: str = "simulated-policy"):
        self.answers = answers
        self.p_good, self.p_bad, self.p_error = p_good, p_bad, p_error
        self.max_steps = max_steps
        self.marker = marker
        self.model = model
        self.calls: list[tuple[int, int]] = []

    def _answers(self, messages: list[dict]) -> tuple[str, str]:
        parts = [p for m in messages if m["role"] == "user"
                 for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])]
        where = [str(p.get("text") or p.get("image") or "") for p in parts]
        for key, a in self.answers.items():
            if any(key in w for w in where):
                wrong = chr(ord("A") + (ord(a.upper()) - ord("A") + 1) % 4) if len(a) == 1 and a.isalpha() else a + "0"
                return a, wrong
        raise ValueError("simulated policy: neither the question nor an image is in its answer table")

    def _solution(self, rng, right: str, wrong: str) -> str:
        from vlprm.data.schema import Step
        from vlprm.steps import join_steps

        n = rng.randint(3, max(3, self.max_steps))
        n_perc = rng.randint(1, max(1, n // 2))
        first = rng.randint(1, n) if rng.random() < self.p_error else None
        steps = []
        for i in range(1, n + 1):
            bad = first is not None and i >= first
            kind = "perception" if i <= n_perc else "reasoning"
            text = f"{'I see' if kind == 'perception' else 'So'} fact number {i}{' ' + self.marker if bad else ''}."
            steps.append(Step(text=text, kind=kind))
        steps[-1].text += f" Therefore, the final answer is \\boxed{{{wrong if first else right}}}."
        return join_steps(steps, "structured")

    def generate(self, requests, sampling, *, progress=True, desc=None):
        import random

        from vlprm.backends.base import Completion, GenerationResult

        self.calls.append((len(requests), len(requests) * sampling.n))
        out = []
        for req in requests:
            seed = req.seed if req.seed is not None else (sampling.seed or 0)
            rng = random.Random(seed)
            try:
                right, wrong = self._answers(req.messages)
            except ValueError as e:
                out.append(GenerationResult(error=str(e), request_id=req.id))
                continue
            comps = []
            if req.continue_final_message:
                prefix = "".join(p.get("text", "") for p in req.messages[-1]["content"])
                p = self.p_bad if self.marker in prefix else self.p_good
                for _ in range(sampling.n):
                    ans = right if rng.random() < p else wrong
                    comps.append(Completion(text=f"Step 99: continuing. The answer is \\boxed{{{ans}}}.",
                                            finish_reason="stop"))
            else:
                for _ in range(sampling.n):
                    comps.append(Completion(text=self._solution(rng, right, wrong), finish_reason="stop"))
            out.append(GenerationResult(completions=comps, request_id=req.id))
        return out
