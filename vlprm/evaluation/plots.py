"""Accuracy vs N plots of an evaluation run (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path


def plot_accuracy_vs_n(results: dict, out_dir: str | Path) -> list[str]:
    """One PNG per benchmark: pass@k, maj@k, BoN@k and weighted@k per aggregation against k
    (log2 axis), step-search strategies as points at their n. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for bench, m in results["benchmarks"].items():
        ks = m["ks"]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.plot(ks, [100 * m["pass@k"][k] for k in ks], "k--", label="pass@k (oracle)")
        ax.plot(ks, [100 * m["maj@k"][k] for k in ks], "o-", label="majority")
        for agg, d in m["bon@k"].items():
            ax.plot(ks, [100 * d[k] for k in ks], "s-", label=f"BoN [{agg}]")
        # Weighted voting for the headline aggregations only: every one of them clutters the plot.
        shown = [a for a in ("last", "outcome") if a in m["weighted@k"]] or list(m["weighted@k"])[:1]
        for agg, d in ((a, m["weighted@k"][a]) for a in shown):
            ax.plot(ks, [100 * d[k] for k in ks], "^:", label=f"weighted [{agg}]", alpha=0.7)
        for strategy, per in (results.get("search") or {}).items():
            if bench in per:
                r = per[bench]
                ax.plot([r["n"]], [100 * r["accuracy"]], "*", markersize=12, label=f"{strategy} (n={r['n']})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("N (candidates)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{bench}: {m['counts']['problems']} problems")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"accuracy_vs_n_{bench.replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def _metric_series(m: dict, metric: str) -> dict | None:
    """{k: value} of "pass@k", "maj@k", "bon@k[agg]" or "weighted@k[agg]" in one benchmark's metrics."""
    if "[" in metric:
        family, agg = metric.rstrip("]").split("[", 1)
        return (m.get(family) or {}).get(agg)
    return m.get(metric)


def plot_runs_comparison(run_dirs: list[str | Path], metrics: list[str], out_path: str | Path,
                         labels: list[str] | None = None) -> str:
    """One figure comparing evaluation runs (e.g. two PRMs on the same candidates): a panel per
    benchmark, a line per (run, metric) against k. Reads each run's metrics.json."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for i, d in enumerate(run_dirs):
        path = Path(d) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not an evaluation run directory (run eval/run_eval.py first)")
        runs.append(((labels[i] if labels else Path(d).name), json.loads(path.read_text())))
    benches = sorted({b for _, r in runs for b in r["benchmarks"]})
    if not benches:
        raise ValueError("no benchmark metrics in the given runs")
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 4.0), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for name, r in runs:
            m = r["benchmarks"].get(bench)
            if not m:
                continue
            for metric in metrics:
                series = _metric_series(m, metric)
                if not series:
                    continue
                pts = sorted((int(k), 100 * v) for k, v in series.items())  # JSON keys are strings
                ax.plot([k for k, _ in pts], [v for _, v in pts], "o-", label=f"{name}: {metric}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (candidates)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(bench)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)
