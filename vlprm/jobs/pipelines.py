"""The command lines of one shard of a run and of its merge, per pipeline.

Local workers (`vlprm.jobs.workers`) and scheduler jobs (`vlprm.jobs.cluster`) both drive the
pipelines only through their command-line contract, `ENTRY --config C [overrides] OUT_FLAG OUT
--shard i/n`, plus one merge command, so the pipelines' internals can change freely.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vlprm.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pipeline:
    """How one pipeline is sharded and merged through its CLI."""

    name: str
    entry: str                    # the run's script, relative to the repo
    out_flag: str                 # the CLI key that names the output directory
    out_key: str                  # the same key in the config YAML (its default)
    shard_stages: tuple[str, ...]  # stages each shard runs (empty: the config's)
    merge_entry: str              # the merge's script, relative to the repo
    merge_stages: tuple[str, ...]  # stages of the merge run (empty: its own default)

    def output_dir(self, args: Sequence[str]) -> str:
        """OUT: the value of OUT_FLAG in args, else the config YAML's key."""
        value = flag_value(args, self.out_flag)
        if value:
            return value
        config = flag_value(args, "--config")
        if config:
            import yaml

            try:
                data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
            except OSError as e:
                raise ConfigError(f"{config}: cannot read the config ({e})") from e
            if isinstance(data, dict) and data.get(self.out_key):
                return str(data[self.out_key])
        raise ConfigError(f"{self.name}: no output directory; pass {self.out_flag} OUT (or set "
                          f"{self.out_key}: in the config)")

    def shard_command(self, python: str, args: Sequence[str], out: str, index: int | str, count: int) -> list[str]:
        """One shard's command (the whole run, unsharded, when count is 1); index may be a
        placeholder a job script replaces with its array index."""
        cmd = [python, self.entry, *args]
        if flag_value(args, self.out_flag) != out:
            cmd += [self.out_flag, out]
        if count > 1:
            cmd += ["--shard", f"{index}/{count}"]
            stages = self._shard_stages(args)
            if stages:
                cmd += ["--stages", ",".join(stages)]
        return cmd

    def merge_command(self, python: str, args: Sequence[str], out: str) -> list[str] | None:
        """The merge's command after all shards (None when the user's stages leave nothing to merge)."""
        if self.name == "synthesis":
            # The shards' own config.yaml (overrides included) is the merge's config.
            return [python, self.merge_entry, "--run", out]
        asked = _stages(args)
        if asked and not set(self.merge_stages) & set(asked):
            return None
        cmd = [python, self.merge_entry, *args]
        if flag_value(args, self.out_flag) != out:
            cmd += [self.out_flag, out]
        return cmd + ["--stages", ",".join(self.merge_stages)]

    def _shard_stages(self, args: Sequence[str]) -> list[str]:
        asked = _stages(args)
        if not self.shard_stages:
            return []
        if not asked:
            return list(self.shard_stages)
        return [s for s in asked if s in self.shard_stages]


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The last value given to `flag` ("--flag V" or "--flag=V") in a command line."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def _stages(args: Sequence[str]) -> list[str]:
    value = flag_value(args, "--stages")
    return [s.strip() for s in value.strip("[]").split(",") if s.strip()] if value else []


PIPELINES = {
    # Shards write OUT/<stage>.shard<i>of<n>.jsonl; the merge reads them all by key, then combine + export.
    "synthesis": Pipeline("synthesis", "rollout_data_generation/run.py", "--out", "out", (),
                          "rollout_data_generation/merge_shards.py", ()),
    # Shards write suffixed files into one run dir under OUT; `--stages metrics` reads them all.
    "evaluation": Pipeline("evaluation", "eval/run_eval.py", "--output_root", "output_root",
                           ("sample", "score", "search"), "eval/run_eval.py", ("metrics",)),
}


def get_pipeline(name: str) -> Pipeline:
    """The pipeline called `name` (synthesis | evaluation)."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}") from None


def shell_join(cmd: Sequence[str]) -> str:
    """A command line a user can paste into a shell."""
    return " ".join(shlex.quote(str(c)) for c in cmd)
