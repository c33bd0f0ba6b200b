"""Monte Carlo labelling cost: OmegaPRM binary search vs per-step MC at equal K.

A simulated policy (`tests/fakes.py`: `SimulatedPolicy`) writes structured solutions whose true
first error step is known; a continuation of a prefix reaches the right answer with probability
p_good before the first error and p_bad (about 0) from it on. The SAME `per_step` /
`binary_search` code as a real run labels every solution; we count the rollouts (continuations)
spent per labelled solution and how often each method's first error matches the truth.

    .venv/bin/python scripts/bench/mc_cost.py [--problems 200 --n 4 --k 8 --p-good 0.6 --p-bad 0.01]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vlprm.backends.base import SamplingConfig
from vlprm.data.schema import Problem
from vlprm.synthesis.mc import Prober, per_step
from vlprm.synthesis.omegaprm import binary_search
from vlprm.synthesis.rollouts import rollout_records, rollout_request, solutions_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # the simulated policy is a test fake
from fakes import SimulatedPolicy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--n", type=int, default=4, help="solutions per problem")
    ap.add_argument("--k", type=int, default=8, help="continuations per probed prefix (both methods)")
    ap.add_argument("--p-good", type=float, default=0.6, help="success prob. of a continuation before the first error")
    ap.add_argument("--p-bad", type=float, default=0.01, help="success prob. from the first error on")
    ap.add_argument("--p-error", type=float, default=0.7, help="share of solutions with an error")
    ap.add_argument("--max-steps", type=int, default=12, help="solutions have 3..max-steps steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    problems = [Problem(id=f"sim{i:04d}", benchmark="sim", question=f"Simulated question {i}?",
                        options=["a", "b", "c", "d"], answer="ABCD"[i % 4], answer_type="multiple_choice")
                for i in range(args.problems)]
    sim = SimulatedPolicy({p.question: p.answer for p in problems}, p_good=args.p_good, p_bad=args.p_bad,
                          p_error=args.p_error, max_steps=args.max_steps)
    results = sim.generate([rollout_request(p, seed=args.seed) for p in problems], SamplingConfig(n=args.n))
    pairs = []
    for p, r in zip(problems, results):
        recs = rollout_records(p, r, args.n, policy="sim", style="structured", max_steps=None, seed=args.seed,
                               drop_truncated=True)
        pairs += [(p, s) for s in solutions_of(recs)]
    truth = {s.id: next((i for i, st in enumerate(s.steps, 1) if sim.marker in st.text), None) for _, s in pairs}
    n_wrong = sum(1 for v in truth.values() if v is not None)
    mean_steps = sum(len(s.steps) for _, s in pairs) / len(pairs)
    print(f"{len(pairs)} solutions ({n_wrong} with an error), mean {mean_steps:.1f} steps; K={args.k}, "
          f"p_good={args.p_good}, p_bad={args.p_bad}")

    methods = {
        "per_step": lambda pr: per_step(pairs, pr),
        "per_step+early_stop": lambda pr: per_step(pairs, pr, early_stop=True),
        "binary_search": lambda pr: binary_search(pairs, pr),
    }
    cost = {}
    print(f"{'method':<22}{'rollouts':>10}{'per solution':>14}{'per wrong sol.':>16}{'calls':>7}"
          f"{'first error = truth':>21}{'(wrong sols)':>14}{'time s':>8}")
    for name, fn in methods.items():
        sim.calls.clear()
        prober = Prober(sim, args.k, SamplingConfig(temperature=1.0), seed=args.seed, progress=False)
        t0 = time.time()
        res = fn(prober)
        dt = time.time() - t0
        total = sum(r.rollouts for r in res)
        wrong_cost = sum(r.rollouts for r in res if truth[r.solution_id] is not None)
        hit = sum(1 for r in res if r.first_error_step == truth[r.solution_id])
        hit_wrong = sum(1 for r in res
                        if truth[r.solution_id] is not None and r.first_error_step == truth[r.solution_id])
        cost[name] = total / len(res)
        print(f"{name:<22}{total:>10}{total / len(res):>14.2f}{wrong_cost / max(1, n_wrong):>16.2f}{len(sim.calls):>7}"
              f"{hit / len(res):>21.1%}{hit_wrong / max(1, n_wrong):>14.1%}{dt:>8.2f}")
    print(f"ratio: binary_search / per_step rollouts per labelled solution = {cost['binary_search']:.2f} / "
          f"{cost['per_step']:.2f} = {cost['binary_search'] / cost['per_step']:.3f} "
          f"(vs per_step+early_stop: {cost['binary_search'] / cost['per_step+early_stop']:.3f})")


if __name__ == "__main__":
    main()
