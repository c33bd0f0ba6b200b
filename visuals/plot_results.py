"""Compare evaluation runs in one figure (logic in vlprm.evaluation.plots).

    python visuals/plot_results.py outputs/eval/RUN_A outputs/eval/RUN_B \
        --metrics "pass@k" "bon@k[last]" "weighted@k[last]" --labels "PRM A" "PRM B" --out fig.png

Each run directory's own plots (accuracy vs N per benchmark) are written by the run itself under
RUN/plots/; synthesis plots (label balance, first-error positions, ...) under the synthesis OUT/plots/.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from vlprm.evaluation.plots import plot_runs_comparison  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Overlay metrics of several evaluation runs against N.")
    p.add_argument("runs", nargs="+", help="evaluation run directories (holding metrics.json)")
    p.add_argument("--metrics", nargs="+", default=["pass@k", "bon@k[last]"],
                   help='e.g. pass@k maj@k "bon@k[min]" "weighted@k[last]"')
    p.add_argument("--labels", nargs="+", help="one name per run (default: the directory names)")
    p.add_argument("--out", default="comparison.png")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"{len(args.labels)} labels for {len(args.runs)} runs")
    print(plot_runs_comparison(args.runs, args.metrics, args.out, args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
