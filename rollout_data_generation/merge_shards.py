"""Merge the shards of a synthesis run (OUT/*.shard<i>of<n>.jsonl), then run combine + export.

    python rollout_data_generation/merge_shards.py --run OUT [--config FILE]

Equivalent to `run.py --config FILE --out OUT --stages combine,export`. Old-layout runs (one
directory per shard, OUT/shards/i-of-n/, or --inputs DIR ...) are joined into OUT first.
"""

import argparse
import sys

from vlprm.runs import RunError, setup_logging
from vlprm.synthesis.merge import merge_shards


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the run directory")
    ap.add_argument("--inputs", nargs="*", help="old layout: shard directories (default: RUN/shards/*-of-*/)")
    ap.add_argument("--config", help="config YAML (default: RUN/config.yaml or a shard's)")
    ap.add_argument("--stages", default="combine,export", help="stages to run on the merged files")
    args = ap.parse_args()
    setup_logging()
    try:
        merge_shards(args.run, args.inputs, stages=args.stages.split(","), config=args.config)
    except (ValueError, OSError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, OSError)) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
