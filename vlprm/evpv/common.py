"""Small helpers the EVPV stages share."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from vlprm.backends.base import ChatRequest, GenerationResult, Generator, SamplingConfig


def content_key(*parts: Any) -> str:
    """A stable cache key from JSON-serialisable parts (never Python's hash)."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()[:32]


def safe_generate(generator: Generator, requests: Sequence[ChatRequest], sampling: SamplingConfig, *,
                  progress: bool = True, desc: str | None = None) -> list[GenerationResult]:
    """`generator.generate` that never raises: backends report per-request failures, but an
    engine can still reject a whole batch (e.g. one prompt longer than the context); then the
    requests are retried one at a time and a request that still fails gets `error` set."""
    if not requests:
        return []
    try:
        return generator.generate(requests, sampling, progress=progress, desc=desc)
    except Exception as batch_error:  # noqa: BLE001 - isolate the bad request below
        out = []
        for req in requests:
            try:
                out.extend(generator.generate([req], sampling, progress=False, desc=desc))
            except Exception as e:  # noqa: BLE001 - recorded as this request's failure
                out.append(GenerationResult(error=f"{type(e).__name__}: {e} (batch: {type(batch_error).__name__})",
                                            request_id=req.id))
        return out
