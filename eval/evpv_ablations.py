"""EVPV ablations from the command line (the logic is `vlprm.evpv.ablations`).

    # Constraint corruption: DROP / FLIP described facts at ratios 0..1; mean reliability and
    # best-of-N accuracy with EVPV-gated scores per (mode, ratio).
    python eval/evpv_ablations.py corruption --problems data/puzzles --candidates synthetic \
        --verifier-backend vllm --verifier-model Qwen/Qwen2.5-VL-7B-Instruct --out out/evpv_corruption

    # Perception intervention: image / image + oracle description / corrupted description, no
    # image / question only; accuracy and what EVPV says about each.
    python eval/evpv_ablations.py intervention --problems data/puzzles --policy-backend vllm \
        --policy-model Qwen/Qwen2.5-VL-3B-Instruct --backend vllm --model Qwen/Qwen2.5-VL-7B-Instruct

    # VisualProcessBench: per-step judge with and without the description.
    python eval/evpv_ablations.py vpb --data OpenGVLab/VisualProcessBench --backend vllm --model M

`--backend/--model` is the generator every EVPV role uses unless a role has its own
(`--describer-*`, `--extractor-*`, `--verifier-*`, `--judge-*`); the verifier backend may be
"lexical" (word matching, no model). Results go to --out as JSON and a text table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

_GENERATORS: dict[tuple, object] = {}


def _generator(backend: str | None, model: str | None, args) -> object | None:
    """One generator per (backend, model) for the whole run."""
    if not backend:
        return None
    if backend == "lexical":
        from vlprm.evpv.lexical import LexicalVerifier

        return _GENERATORS.setdefault(("lexical",), LexicalVerifier())
    if not model:
        raise SystemExit(f"backend {backend!r} needs a model (--model or the role's --*-model)")
    key = (backend, model)
    if key not in _GENERATORS:
        from vlprm.backends import make_generator

        kw: dict = {}
        if backend == "vllm":
            kw["max_model_len"] = args.max_model_len
        if backend == "openai" and args.base_url:
            kw["base_url"] = args.base_url
        _GENERATORS[key] = make_generator(backend, model, **kw)
    return _GENERATORS[key]


def _role(args, role: str):
    return _generator(getattr(args, f"{role}_backend") or args.backend, getattr(args, f"{role}_model") or args.model,
                      args)


def _evpv_config(args, **over):
    from vlprm.evpv.scoring import EVPVConfig

    base = EVPVConfig.from_yaml(args.evpv_config).to_dict() if args.evpv_config else {}
    base.update({k: v for k, v in over.items() if v is not None})
    if args.out:
        base.setdefault("cache_dir", str(Path(args.out) / "cache"))
    return EVPVConfig.from_dict(base)


def _base_scorer(spec: str):
    from vlprm.evpv.scoring import ConstantScorer, PrecomputedScorer

    if spec == "constant":
        return ConstantScorer(1.0)
    if spec.startswith("precomputed:"):
        return PrecomputedScorer.from_jsonl(spec.split(":", 1)[1])
    if spec.startswith("prm:"):
        from vlprm.prm.scorer import make_scorer

        return make_scorer("hf", spec.split(":", 1)[1])
    raise SystemExit(f"--base must be constant, precomputed:FILE or prm:DIR, got {spec!r}")


def _problems(args):
    from vlprm.data.benchmarks import load_benchmark

    return load_benchmark(args.benchmark, args.problems, limit=args.limit)


def _write(args, name: str, result, table: str) -> None:
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        (out / f"{name}.txt").write_text(table + "\n")
        print(f"-> {out / (name + '.json')}")


def _candidate_sets(args, problems, scorer_has_describer):
    """CandidateSets from hand-made candidates or a Solution JSONL, with their descriptions."""
    from vlprm.data.schema import Solution
    from vlprm.data.store import read_jsonl
    from vlprm.evpv.ablations import CandidateSet, puzzle_candidates
    from vlprm.prm.scorer import build_prm_sample

    sets, skipped = [], 0
    if args.candidates == "synthetic":
        for p in problems:
            cs = puzzle_candidates(p, args.n_wrong, args.seed)
            if cs is None:
                skipped += 1
            else:
                sets.append(cs)
    else:
        by_pid: dict[str, list] = {}
        for r in read_jsonl(args.candidates, strict=True):
            s = Solution.from_dict(r)
            by_pid.setdefault(s.problem_id, []).append(s)
        for p in problems:
            sols = [s for s in by_pid.get(p.id, []) if s.correct is not None and s.steps]
            if not sols:
                skipped += 1
                continue
            sets.append(CandidateSet(problem_id=p.id, samples=[build_prm_sample(p, s.steps, id=s.id) for s in sols],
                                     correct=[bool(s.correct) for s in sols], description=None, base_scores=None))
    if args.candidates != "synthetic" and args.base == "constant":
        for cs in sets:
            cs.base_scores = [[1.0] * len(s.steps) for s in cs.samples]
    elif args.candidates == "synthetic" and args.base != "constant":
        for cs in sets:
            cs.base_scores = None  # score the hand-made candidates with the given base scorer
    by_id = {p.id: p for p in problems}
    return sets, skipped, by_id


def cmd_corruption(args) -> dict:
    from vlprm.evpv.ablations import corruption_sweep, format_table, oracle_description
    from vlprm.evpv.scoring import EVPVScorer

    t0 = time.time()
    problems = _problems(args)
    cfg = _evpv_config(args, checklist=args.checklist, progress=not args.quiet)
    scorer = EVPVScorer(cfg, _base_scorer(args.base), describer=_role(args, "describer"),
                        extractor=_role(args, "extractor"), verifier=_role(args, "verifier"))
    sets, skipped, by_id = _candidate_sets(args, problems, scorer.describer is not None)
    kept, no_desc = [], 0
    if args.descriptions == "oracle":
        for cs in sets:
            cs.description = oracle_description(by_id[cs.problem_id])
    else:
        got = scorer.describe([cs.samples[0] for cs in sets])
        for cs, d in zip(sets, got):
            cs.description = d.description if d.ok else None
    for cs in sets:
        if cs.description is None:
            no_desc += 1
        else:
            kept.append(cs)
    if not kept:
        raise SystemExit(f"no problem has candidates and a description ({skipped} without candidates, "
                         f"{no_desc} without a readable description)")
    modes = [m for m in args.modes.split(",") if m]
    ratios = [float(r) for r in args.ratios.split(",") if r]
    rows = corruption_sweep(kept, scorer, modes=modes, ratios=ratios, seed=args.seed, aggregation=args.aggregation)
    table = format_table(rows, ["mode", "ratio", "mean_reliability", "bon_accuracy", "base_bon_accuracy",
                                "facts_changed", "facts_total", "fallback_steps"])
    summary = {"problems": len(kept), "skipped_no_candidates": skipped, "skipped_no_description": no_desc,
               "evpv": scorer.summary(), "seconds": round(time.time() - t0, 1)}
    table += f"\n{scorer.summary_line()}\nproblems {len(kept)} (skipped: {skipped} without candidates, " \
             f"{no_desc} without a description)"
    result = {"rows": rows, "summary": summary}
    _write(args, "corruption", result, table)
    scorer.close()
    return result


def cmd_intervention(args) -> dict:
    from vlprm.backends.base import SamplingConfig
    from vlprm.evpv.ablations import format_table, perception_intervention
    from vlprm.evpv.scoring import EVPVScorer

    t0 = time.time()
    problems = _problems(args)
    policy = _generator(args.policy_backend, args.policy_model, args)
    if policy is None:
        raise SystemExit("intervention needs --policy-backend and --policy-model")
    cfg = _evpv_config(args, checklist=args.checklist, progress=not args.quiet)
    scorer = EVPVScorer(cfg, _base_scorer(args.base), describer=_role(args, "describer"),
                        extractor=_role(args, "extractor"), verifier=_role(args, "verifier"))
    res = perception_intervention(problems, policy, scorer, n=args.n,
                                  sampling=SamplingConfig(temperature=args.temperature, max_tokens=args.max_tokens),
                                  corruption=(args.corruption_mode, args.corruption_ratio), seed=args.seed,
                                  aggregation=args.aggregation)
    table = format_table(res["rows"], ["condition", "solutions", "accuracy", "no_answer", "mean_reliability",
                                       "mean_score", "fallback_steps", "failed", "skipped"])
    table += f"\n{scorer.summary_line()}"
    res["summary"] = {"evpv": scorer.summary(), "seconds": round(time.time() - t0, 1)}
    _write(args, "intervention", res, table)
    scorer.close()
    return res


def cmd_vpb(args) -> dict:
    from vlprm.evpv.ablations import format_table, puzzle_process_bench, visual_process_bench

    t0 = time.time()
    if args.synthetic_from:
        from vlprm.data.benchmarks import load_puzzles

        samples = puzzle_process_bench(load_puzzles(args.synthetic_from, limit=args.limit), seed=args.seed)
    else:
        from vlprm.data.benchmarks import load_benchmark

        samples = load_benchmark("visualprocessbench", args.data, limit=args.limit)
    judge = _role(args, "judge")
    if judge is None:
        raise SystemExit("vpb needs a judge (--backend/--model or --judge-backend/--judge-model)")
    res = visual_process_bench(samples, judge, describer=_role(args, "describer"), threshold=args.threshold,
                               cache_dir=str(Path(args.out) / "cache") if args.out else None, seed=args.seed,
                               max_tokens=args.max_tokens, progress=not args.quiet)
    rows = []
    for cond, m in res["metrics"].items():
        o = (m or {}).get("overall", {})
        rows.append({"condition": cond, "f1_correct": o.get("f1_correct"), "f1_incorrect": o.get("f1_incorrect"),
                     "macro_f1": o.get("macro_f1"), "steps": o.get("n_steps"),
                     "fallback_steps": res["counts"][cond].get("fallback_steps", 0),
                     "unreadable": res["counts"][cond].get("unreadable", 0)})
    table = format_table(rows, ["condition", "f1_correct", "f1_incorrect", "macro_f1", "steps", "fallback_steps",
                                "unreadable"])
    table += f"\nsamples {len(samples)}, descriptions unreadable: {res['counts'].get('description_unreadable', 0)}"
    res["summary"] = {"rows": rows, "seconds": round(time.time() - t0, 1)}
    _write(args, "vpb", res, table)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, problems=True):
        if problems:
            sp.add_argument("--problems", required=True, help="benchmark path or hub id (see --benchmark)")
            sp.add_argument("--benchmark", default="puzzles", help="loader name for --problems (default: puzzles)")
        sp.add_argument("--limit", type=int, default=None, help="use the first N items")
        sp.add_argument("--backend", default=None, help="generator of every EVPV role: vllm, openai, hf")
        sp.add_argument("--model", default=None)
        for role in ("describer", "extractor", "verifier", "judge"):
            sp.add_argument(f"--{role}-backend", default=None,
                            help=f"{role} generator (default --backend){'; or lexical' if role == 'verifier' else ''}")
            sp.add_argument(f"--{role}-model", default=None)
        sp.add_argument("--base-url", default=None, help="for the openai backend")
        sp.add_argument("--max-model-len", type=int, default=4096, help="for the vllm backend")
        sp.add_argument("--evpv-config", default=None, help="YAML with EVPVConfig fields (optionally under 'evpv:')")
        sp.add_argument("--checklist", default=None, choices=["auto", "policy", "extractor"])
        sp.add_argument("--base", default="constant", help="base step rewards: constant, precomputed:FILE, prm:DIR")
        sp.add_argument("--aggregation", default="min", choices=["mean", "min", "last", "product"])
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--out", default=None, help="output dir (results JSON, table, EVPV caches)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    c = sub.add_parser("corruption", help="DROP/FLIP described facts at increasing ratios")
    common(c)
    c.add_argument("--candidates", default="synthetic",
                   help="'synthetic' (hand-made from ground-truth facts) or a Solution JSONL with correct set")
    c.add_argument("--n-wrong", type=int, default=3, help="synthetic: wrong candidates per problem")
    c.add_argument("--descriptions", default="oracle", choices=["oracle", "describe"],
                   help="oracle: from ground-truth perception facts; describe: the describer's")
    c.add_argument("--modes", default="drop,flip")
    c.add_argument("--ratios", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    c.set_defaults(func=cmd_corruption)

    i = sub.add_parser("intervention", help="what the policy does with/without image and description")
    common(i)
    i.add_argument("--policy-backend", required=True)
    i.add_argument("--policy-model", required=True)
    i.add_argument("--n", type=int, default=1, help="solutions per problem and condition")
    i.add_argument("--temperature", type=float, default=0.7)
    i.add_argument("--max-tokens", type=int, default=1024)
    i.add_argument("--corruption-mode", default="flip", choices=["drop", "flip"])
    i.add_argument("--corruption-ratio", type=float, default=0.5)
    i.set_defaults(func=cmd_intervention)

    v = sub.add_parser("vpb", help="VisualProcessBench: step judge with and without the description")
    common(v, problems=False)
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="VisualProcessBench path or hub id")
    src.add_argument("--synthetic-from", help="a puzzles dir: VPB-like samples from hand-made candidates")
    v.add_argument("--threshold", type=float, default=0.5)
    v.add_argument("--max-tokens", type=int, default=1024, help="reply limit of the describer and the judge")
    v.set_defaults(func=cmd_vpb)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    finally:
        for g in _GENERATORS.values():
            close = getattr(g, "close", None)
            if close:
                close()
        _GENERATORS.clear()


if __name__ == "__main__":
    main()
