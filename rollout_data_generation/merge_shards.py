"""Join the shards of a run (OUT/shards/i-of-n/) by key into OUT, then run combine + export there.

    python rollout_data_generation/merge_shards.py --run OUT [--inputs DIR ...] [--config FILE]
"""

import argparse
import sys

from vlprm.synthesis.pipeline import merge_shards


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the run directory (shards under RUN/shards/)")
    ap.add_argument("--inputs", nargs="*", help="shard directories (default: RUN/shards/*/)")
    ap.add_argument("--config", help="config YAML (default: the first shard's config.yaml)")
    ap.add_argument("--stages", default="combine,export", help="stages to run on the merged files")
    args = ap.parse_args()
    merge_shards(args.run, args.inputs, stages=args.stages.split(","), config=args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
