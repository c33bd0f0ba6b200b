"""The problems of an evaluation job: every configured benchmark, loaded, checked and sharded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlprm.runs import RunError, image_cache_dir, in_shard, parse_shard, skipped_entries

if TYPE_CHECKING:
    from vlprm.evaluation.config import EvalConfig


def load_problems(cfg: "EvalConfig") -> tuple[dict[str, list], dict[str, dict], list[dict]]:
    """({benchmark key: this shard's items}, {key: load report}, skipped.jsonl entries).

    A benchmark that loads 0 items is an error naming the skip reasons (never a table that
    silently covers fewer benchmarks than configured)."""
    from vlprm.data.benchmarks import LoadReport, load_benchmark

    shard = parse_shard(cfg.shard)
    problems, reports, skipped = {}, {}, []
    for spec in cfg.benchmarks:
        if cfg.only_benchmarks and spec.name not in cfg.only_benchmarks and spec.key not in cfg.only_benchmarks:
            continue
        kw: dict[str, Any] = {"on_error": "skip"}
        if spec.first_n_per_type is not None:
            kw["first_n_per_type"] = spec.first_n_per_type
        kw["image_cache_dir"] = image_cache_dir(spec.path, cfg.image_cache_dir)
        report = LoadReport(benchmark=spec.key, source=spec.path)
        items = load_benchmark(spec.name, spec.path, split=spec.split, limit=spec.limit, report=report, **kw)
        if report.loaded == 0 and spec.limit != 0:  # (limit 0 asks for none)
            raise RunError(f"benchmark {spec.key} ({spec.path}) loaded 0 problems: {report.summary()}. "
                           "Fix its path or the records listed, or remove it from `benchmarks`")
        problems[spec.key] = [x for x in items if in_shard(str(x.id), shard)]
        reports[spec.key] = {"loaded": report.loaded, "skipped": len(report.skipped),
                             "skip_reasons": dict(report.reasons)}
        skipped += skipped_entries(report)
    return problems, reports, skipped
