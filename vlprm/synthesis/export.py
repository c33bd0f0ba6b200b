"""Stage 5: write the PRM training set and the run's stats report.

Export layout (docs/CONTRACTS.md, "PRM dataset on disk"):

    DIR/prm.jsonl   one `PRMSample.to_dict()` per kept solution, sorted by solution id, plus
                    problem_id, solution_id, label_view, first_error_step, error_kind,
                    benchmark and step_kinds; image paths relative to DIR
    DIR/images/     the images, copied
    DIR/hf/         the same rows as `datasets.Dataset.save_to_disk`

The directory is written next to the old one and swapped in, so a killed export never leaves
half a dataset. A solution without a final answer that no label view found an error in is
not exported as error-free: it is dropped with reason `no_final_answer` (`mark_no_final_answer`)
and counted in the report. `write_report` collects the stats of every stage file of a run (counts,
failures by stage and reason, label balance, first-error positions, perception vs reasoning
share of first errors, MC/judge agreement, rollouts spent) into report.md and PNG plots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from vlprm.data.schema import Problem, Solution
from vlprm.prm.format import PRMSample
from vlprm.prompts import question_with_options

EXTRA_KEYS = ("problem_id", "solution_id", "label_view", "first_error_step", "error_kind", "benchmark",
              "step_kinds")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:120]


def _copy_images(problems: Sequence[Problem], images_dir: Path) -> dict[str, list[str]]:
    """Copy each problem's images to images_dir; {problem id: [path relative to the export dir]}."""
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for p in sorted(problems, key=lambda p: p.id):
        rels = []
        for j, src in enumerate(p.images):
            ext = Path(src).suffix.lower() or ".png"
            name = f"{_safe(p.id)}_{j}{ext}"
            if name in used:  # two ids that sanitise alike
                import hashlib

                name = f"{_safe(p.id)}_{hashlib.sha1(p.id.encode()).hexdigest()[:8]}_{j}{ext}"
            used.add(name)
            images_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, images_dir / name)
            rels.append(f"images/{name}")
        out[p.id] = rels
    return out


NO_FINAL_ANSWER = "no_final_answer"


def mark_no_final_answer(combined: Sequence[dict], unanswered: set[str]) -> list[dict]:
    """The combined records, with each kept one whose solution (id in `unanswered`) has no final
    answer and ends on a "+" step turned into a drop with reason `no_final_answer`: nothing says
    such a solution is right, and its steps' MC evidence came from continuations that supplied
    an answer it never gave. One with an error found keeps its labels (its last step is "-")."""
    out = []
    for rec in combined:
        if rec.get("kept") and rec["solution_id"] in unanswered and (rec.get("labels") or ["+"])[-1] == "+":
            rec = {**rec, "kept": False, "reason": NO_FINAL_ANSWER}
        out.append(rec)
    return out


def export_rows(combined: Sequence[dict], solutions: dict[str, Solution], problems: dict[str, Problem],
                view: str, image_paths: dict[str, list[str]]) -> list[dict]:
    """prm.jsonl rows of the kept records of one view, sorted by solution id."""
    rows = []
    for rec in sorted((r for r in combined if r["view"] == view and r["kept"]), key=lambda r: r["solution_id"]):
        sol = solutions[rec["solution_id"]]
        prob = problems[sol.problem_id]
        steps = sol.steps[: rec["num_steps"]]
        sample = PRMSample(question=question_with_options(prob), steps=[s.text for s in steps],
                           images=image_paths[prob.id], labels=list(rec["labels"]),
                           soft_labels=rec.get("soft_labels"), id=sol.id)
        row = sample.to_dict()
        row.update(problem_id=prob.id, solution_id=sol.id, label_view=view,
                   first_error_step=rec["first_error_step"], error_kind=rec["error_kind"],
                   benchmark=prob.benchmark, step_kinds=[s.kind for s in steps])
        rows.append(row)
    return rows


def _hf_features():
    from datasets import Features, List, Value

    s = Value("string")
    return Features({"id": s, "question": s, "steps": List(s), "images": List(s), "labels": List(s),
                     "soft_labels": List(Value("float64")), "problem_id": s, "solution_id": s,
                     "label_view": s, "first_error_step": Value("int64"), "error_kind": s, "benchmark": s,
                     "step_kinds": List(s)})


def export_dataset(out_dir: str | os.PathLike, combined: Sequence[dict], solutions: dict[str, Solution],
                   problems: dict[str, Problem], view: str, *, hf: bool = True) -> int:
    """Write the export directory for one label view (atomically replaced); returns the row count."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    combined = mark_no_final_answer(combined, {s.id for s in solutions.values() if not s.final_answer})
    kept_ids = {r["solution_id"] for r in combined if r["view"] == view and r["kept"]}
    used = [problems[solutions[s].problem_id] for s in kept_ids]
    used = list({p.id: p for p in used}.values())
    image_paths = _copy_images(used, tmp / "images")
    rows = export_rows(combined, solutions, problems, view, image_paths)
    with open(tmp / "prm.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if hf:
        from datasets import Dataset

        feats = _hf_features()
        # from_dict rather than from_list, and one shard: an empty export still loads, with its columns.
        ds = Dataset.from_dict({k: [r[k] for r in rows] for k in feats}, features=feats)
        ds.save_to_disk(str(tmp / "hf"), num_shards=1 if not rows else None)
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
    return len(rows)


# --------------------------------------------------------------------------- stats


def _reasons(records: Sequence[dict]) -> Counter:
    return Counter(r.get("reason") or "unknown" for r in records if r.get("status") != "ok")


def collect_stats(problems: Sequence[Problem], rollouts: Sequence[dict], mc: Sequence[dict], judge: Sequence[dict],
                  combined: Sequence[dict], export_view: str | None, export_rows_: Sequence[dict] | None = None
                  ) -> dict[str, Any]:
    """Every number of the report, from the stage records (so a stages-only rerun reports the same)."""
    ok_sol = [r for r in rollouts if r.get("status") == "ok"]
    n_steps = [len(r.get("steps") or []) for r in ok_sol]
    kinds = Counter(s.get("kind", "reasoning") for r in ok_sol for s in r.get("steps") or [])
    mc_ok = [r for r in mc if r.get("status") == "ok"]
    judge_ok = [r for r in judge if r.get("status") == "ok"]
    combined = mark_no_final_answer(combined, {r["id"] for r in ok_sol if not r.get("final_answer")})
    st: dict[str, Any] = {
        "problems": len(problems),
        "rollouts": {"records": len(rollouts), "ok": len(ok_sol), "failed": dict(_reasons(rollouts)),
                     "correct": sum(1 for r in ok_sol if r.get("correct")),
                     "truncated": sum(1 for r in ok_sol if (r.get("metadata") or {}).get("finish_reason") == "length"),
                     "mean_steps": (sum(n_steps) / len(n_steps)) if n_steps else 0.0,
                     "step_kinds": dict(kinds)},
        "mc": {"records": len(mc), "ok": len(mc_ok), "failed": dict(_reasons(mc)),
               "methods": dict(Counter(r.get("method") for r in mc)),
               "rollouts": sum(r.get("rollouts") or 0 for r in mc),
               "probes": sum(len(r.get("probes") or []) for r in mc),
               "rollouts_per_solution": (sum(r.get("rollouts") or 0 for r in mc_ok) / len(mc_ok)) if mc_ok else 0.0},
        "judge": {"records": len(judge), "ok": len(judge_ok), "failed": dict(_reasons(judge)),
                  "verdicts": dict(Counter(r.get("verdict") for r in judge_ok))},
    }
    views: dict[str, Any] = {}
    for rec in combined:
        v = views.setdefault(rec["view"], {"kept": 0, "dropped": Counter(), "plus": 0, "minus": 0,
                                           "first_error": Counter(), "error_kind": Counter(), "no_error": 0})
        if not rec["kept"]:
            v["dropped"][rec["reason"] or "unknown"] += 1
            continue
        v["kept"] += 1
        v["plus"] += rec["labels"].count("+")
        v["minus"] += rec["labels"].count("-")
        if rec["first_error_step"] is None:
            v["no_error"] += 1
        else:
            v["first_error"][rec["first_error_step"]] += 1
            v["error_kind"][rec["error_kind"]] += 1
    for v in views.values():
        v["dropped"] = dict(v["dropped"])
        v["first_error"] = dict(sorted(v["first_error"].items()))
        v["error_kind"] = dict(v["error_kind"])
    st["views"] = views
    # MC / judge agreement on the solutions that have both (one record per solution: take the
    # first view's mc_first_error / judge_first_error, they do not depend on the view).
    both: dict[str, tuple] = {}
    mc_ok_ids = {r["id"] for r in mc_ok}
    judge_ok_ids = {r["id"] for r in judge_ok}
    for rec in combined:
        sid = rec["solution_id"]
        if sid in mc_ok_ids and sid in judge_ok_ids and sid not in both:
            both[sid] = (rec["mc_first_error"], rec["judge_first_error"])
    agree = {"solutions": len(both), "same_first_error": sum(1 for a, b in both.values() if a == b),
             "same_has_error": sum(1 for a, b in both.values() if (a is None) == (b is None)),
             "confusion": {"mc_error_judge_error": sum(1 for a, b in both.values() if a is not None and b is not None),
                           "mc_error_judge_none": sum(1 for a, b in both.values() if a is not None and b is None),
                           "mc_none_judge_error": sum(1 for a, b in both.values() if a is None and b is not None),
                           "mc_none_judge_none": sum(1 for a, b in both.values() if a is None and b is None)}}
    st["agreement"] = agree
    st["export"] = {"view": export_view, "rows": len(export_rows_ or []),
                    "steps": sum(len(r["steps"]) for r in export_rows_ or [])}
    return st


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def _fmt_counter(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], str(kv[0])))) or "none"


def render_report(st: dict, *, title: str = "Rollout data synthesis report", plots: Sequence[str] = ()) -> str:
    """The markdown report of `collect_stats` output."""
    ro, mc, jd, ag = st["rollouts"], st["mc"], st["judge"], st["agreement"]
    lines = [f"# {title}", "", "## Stages", "",
             "| stage | records | ok | failed (by reason) |", "|---|---|---|---|",
             f"| problems | {st['problems']} | {st['problems']} | - |",
             f"| rollouts | {ro['records']} | {ro['ok']} | {_fmt_counter(ro['failed'])} |",
             f"| mc | {mc['records']} | {mc['ok']} | {_fmt_counter(mc['failed'])} |",
             f"| judge | {jd['records']} | {jd['ok']} | {_fmt_counter(jd['failed'])} |", "",
             "## Policy solutions", "",
             f"- usable solutions: {ro['ok']}; final answer correct: {ro['correct']} "
             f"({_pct(ro['correct'], ro['ok'])}); truncated: {ro['truncated']}",
             f"- mean steps per solution: {ro['mean_steps']:.2f}; steps by kind: {_fmt_counter(ro['step_kinds'])}",
             "", "## Monte Carlo", "",
             f"- method(s): {_fmt_counter(mc['methods'])}; probed prefixes: {mc['probes']}; "
             f"continuations (rollouts) spent: {mc['rollouts']}",
             f"- rollouts per labelled solution: {mc['rollouts_per_solution']:.2f}",
             f"- total policy samples (solutions + continuations): {ro['records'] + mc['rollouts']}",
             "", "## Judge", "",
             f"- verdicts: {_fmt_counter({str(k): v for k, v in jd['verdicts'].items()})}",
             "", "## Label views", "",
             "| view | kept | dropped (by reason) | + steps | - steps | + share | no error "
             "| first error: perception | first error: reasoning |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, v in st["views"].items():
        ek = v["error_kind"]
        n_err = sum(ek.values())
        lines.append(f"| {name} | {v['kept']} | {_fmt_counter(v['dropped'])} | {v['plus']} | {v['minus']} | "
                     f"{_pct(v['plus'], v['plus'] + v['minus'])} | {v['no_error']} | "
                     f"{ek.get('perception', 0)} ({_pct(ek.get('perception', 0), n_err)}) | "
                     f"{ek.get('reasoning', 0)} ({_pct(ek.get('reasoning', 0), n_err)}) |")
    lines += ["", "### First error position (step number: solutions)", ""]
    for name, v in st["views"].items():
        lines.append(f"- {name}: {_fmt_hist(v['first_error'])}")
    c = ag["confusion"]
    lines += ["", "## MC / judge agreement", "",
              f"- solutions with both MC and judge evidence: {ag['solutions']}",
              f"- same first error step: {ag['same_first_error']} ({_pct(ag['same_first_error'], ag['solutions'])})",
              f"- agree on whether there is an error: {ag['same_has_error']} "
              f"({_pct(ag['same_has_error'], ag['solutions'])})",
              "", "| | judge: error | judge: none |", "|---|---|---|",
              f"| MC: error | {c['mc_error_judge_error']} | {c['mc_error_judge_none']} |",
              f"| MC: none | {c['mc_none_judge_error']} | {c['mc_none_judge_none']} |",
              "", "## Export", "",
              f"- view: {st['export']['view']}; rows: {st['export']['rows']}; steps: {st['export']['steps']}"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _fmt_hist(h: dict) -> str:
    return " ".join(f"{k}:{v}" for k, v in h.items()) if h else "none"


def write_plots(st: dict, plots_dir: str | os.PathLike) -> list[str]:
    """PNG plots (matplotlib, Agg) of label balance, first-error positions, error kinds and
    MC/judge agreement; returns their paths relative to the run directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    views = st["views"]
    names = list(views)
    out = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, [views[n]["plus"] for n in names], label="+", color="#4c9a2a")
    ax.bar(names, [views[n]["minus"] for n in names], bottom=[views[n]["plus"] for n in names], label="-",
           color="#c0392b")
    ax.set_ylabel("steps")
    ax.set_title("Label balance by view")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots_dir / "label_balance.png", dpi=100)
    plt.close(fig)
    out.append("plots/label_balance.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        h = views[n]["first_error"]
        xs = [int(k) + (i - (len(names) - 1) / 2) * width for k in h]
        ax.bar(xs, list(h.values()), width=width, label=n)
    ax.set_xlabel("first error step")
    ax.set_ylabel("solutions")
    ax.set_title("First error position")
    if names:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots_dir / "first_error_position.png", dpi=100)
    plt.close(fig)
    out.append("plots/first_error_position.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    per = [views[n]["error_kind"].get("perception", 0) for n in names]
    rea = [views[n]["error_kind"].get("reasoning", 0) for n in names]
    ax.bar(names, per, label="perception", color="#2e86c1")
    ax.bar(names, rea, bottom=per, label="reasoning", color="#f39c12")
    ax.set_ylabel("solutions with an error")
    ax.set_title("Kind of the first error step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots_dir / "error_kind.png", dpi=100)
    plt.close(fig)
    out.append("plots/error_kind.png")

    c = st["agreement"]["confusion"]
    m = [[c["mc_error_judge_error"], c["mc_error_judge_none"]], [c["mc_none_judge_error"], c["mc_none_judge_none"]]]
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(m, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i][j]), ha="center", va="center")
    ax.set_xticks([0, 1], ["judge: error", "judge: none"])
    ax.set_yticks([0, 1], ["MC: error", "MC: none"])
    ax.set_title("MC / judge agreement")
    fig.tight_layout()
    fig.savefig(plots_dir / "agreement.png", dpi=100)
    plt.close(fig)
    out.append("plots/agreement.png")
    return out


def write_report(run_dir: str | os.PathLike, st: dict) -> Path:
    """Write run_dir/report.md (and run_dir/plots/*.png); returns the report path."""
    run_dir = Path(run_dir)
    plots = write_plots(st, run_dir / "plots")
    path = run_dir / "report.md"
    path.write_text(render_report(st, plots=plots), encoding="utf-8")
    return path
