"""VisualProcessBench loader: problems with a policy's steps and their human step labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlprm.data.benchmarks.common import (image_cache_for, LoadReport, ProcessBenchSample, _check_bad_line, _collect, _find_one,
                                          _Images, _is_local, _iter_jsonl, _Raw, _RecordError, _require,
                                          _safe_name, infer_answer_type)
from vlprm.data.schema import Problem


def _vpb_convert(raw: _Raw, images: _Images, bases: list[Path]) -> ProcessBenchSample:
    rec = _check_bad_line(raw)
    _require(rec, "image", "question", "answer", "response")
    resp = rec["response"]
    if isinstance(resp, str):  # the hub card types it as a string; accept a JSON-encoded dict
        try:
            resp = json.loads(resp)
        except json.JSONDecodeError:
            raise _RecordError("response is a string but not JSON with 'steps' and 'process_correctness'") from None
    if not isinstance(resp, dict) or "steps" not in resp or "process_correctness" not in resp:
        raise _RecordError("missing required field(s) 'response.steps' / 'response.process_correctness'")
    steps, labels = resp["steps"], resp["process_correctness"]
    if not isinstance(steps, list) or not isinstance(labels, list):
        raise _RecordError("response.steps and response.process_correctness must be lists")
    if len(steps) != len(labels):
        raise _RecordError(f"{len(steps)} steps but {len(labels)} process_correctness labels")
    try:
        labels = [int(x) for x in labels]
    except (TypeError, ValueError):
        raise _RecordError(f"process_correctness must be integers 1/0/-1, got {labels!r}") from None
    if any(x not in (1, 0, -1) for x in labels):
        raise _RecordError(f"process_correctness must be 1/0/-1, got {labels!r}")
    imgs = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
    paths = [images.from_value(v, f"{raw.rid}_{k + 1}", bases) for k, v in enumerate(imgs)]
    source = str(rec.get("data_source") or "unknown")
    answer = str(rec["answer"]).strip()
    problem = Problem(id=raw.rid, benchmark="visualprocessbench", question=rec["question"], images=paths,
                      options=None, answer=answer, answer_type=infer_answer_type(answer),
                      metadata={"data_source": source, "policy_model": rec.get("policy_model")})
    return ProcessBenchSample(id=raw.rid, problem=problem, steps=[str(s) for s in steps], labels=labels,
                              source=source)


def load_visualprocessbench(path_or_hub_id: str | os.PathLike = "OpenGVLab/VisualProcessBench",
                            split: str | None = None, limit: int | None = None, *, on_error: str = "raise",
                            check_images: bool = True, image_cache_dir: str | os.PathLike | None = None,
                            report: LoadReport | None = None) -> list[ProcessBenchSample]:
    """Load VisualProcessBench: `test.jsonl` (or the file itself) with images relative to the
    dataset root (unzipped `images.zip`). `image` may be one path or a list. id is the
    record's "id" or "vpb_{index:05d}". With a hub id the repo is downloaded and unzipped.
    """
    split = split or "test"
    if not _is_local(path_or_hub_id):
        path_or_hub_id = _vpb_snapshot(str(path_or_hub_id))
    root = Path(path_or_hub_id).resolve()
    f = _find_one(root, [f"{split}.jsonl", f"data/{split}.jsonl"], "VisualProcessBench", split)[0]
    bases = [f.parent, f.parent.parent] + ([root] if root.is_dir() else [])
    images = _Images(image_cache_for(f.parent, image_cache_dir), check_images)
    raws = _iter_jsonl(f, lambda i, r: r.get("id") or f"vpb_{i:05d}")
    return _collect(raws, lambda r: _vpb_convert(r, images, bases), benchmark="visualprocessbench",
                    source=str(root), on_error=on_error, report=report, limit=limit)


def _vpb_snapshot(hub_id: str) -> str:
    """Download the dataset repo (test.jsonl + images.zip) and unzip the images once."""
    import zipfile

    from huggingface_hub import snapshot_download

    local = Path(snapshot_download(repo_id=hub_id, repo_type="dataset"))
    target = Path(os.environ.get("VLPRM_CACHE") or Path.home() / ".cache" / "vlprm") / "benchmarks" / _safe_name(hub_id)
    if not (target / "test.jsonl").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("test.jsonl",):
            (target / name).write_bytes((local / name).read_bytes())
        if (local / "images.zip").exists():
            with zipfile.ZipFile(local / "images.zip") as z:
                z.extractall(target)
    return str(target)
