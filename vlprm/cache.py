"""One cached model call: ask a generator, keep each reply by a content key, parse it.

Every stage that asks a model something it may ask again (the synthesis judge, the EVPV
describer, extractor, verifier and step judge) goes through `CachedCalls`:

    calls = CachedCalls(generator, ReplyStore(run_dir / "verify.jsonl"), sampling, name="verify")
    records = calls.run([Call(request, parse=read_verification, meta={"sample_id": sid})])

* The key of a request (`request_key`) hashes the model, the messages with every image
  replaced by the SHA-256 of its bytes (never its path: a file rewritten in place is a new
  request, a copy elsewhere is the same one), the sampling settings and the seed.
* Identical requests are asked once; a key already in the store is not asked again (unless
  it failed and `retry_failed`).
* The backend's error rule holds: a request the backend reports as failed (`GenerationResult.error`)
  is recorded as a failed record (reason "request_error") and the run goes on; the generator
  raising (a dead engine, out of memory) is not caught, so the run stops instead of recording
  every later request as failed.
* A reply is parsed by the call's `parse(raw) -> (fields | None, error, repairs)`; a reply that
  cannot be read is recorded with reason "unreadable", its error and its raw text.

Record: {"key", "model", **meta, "ok", **fields, "reason", "error", "repairs", "raw"}.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.data.store import JsonlStore, stable_seed

# (fields to store | None when unreadable, error, repairs made to read it)
Parsed = tuple[dict | None, str | None, list[str]]


def image_sha256(image: Any) -> str:
    """SHA-256 of an image's bytes (file path, file:// URL, bytes, data URL; PIL images via their
    PNG encoding). Raises OSError when a file cannot be read."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, str) and image.startswith("data:"):
        data = base64.b64decode(image.split(",", 1)[1])
    elif hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        path = os.fspath(image)
        if path.startswith("file://"):
            path = path[len("file://"):]
        with open(path, "rb") as f:
            data = f.read()
    return hashlib.sha256(data).hexdigest()


def hash_images(obj: Any) -> Any:
    """A copy of a message structure (HF multimodal messages or an OpenAI request body) with every
    image (an "image" part, a data URL) replaced by "sha256:<hash of its bytes>"."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            is_image_part = k == "image" and (obj.get("type") in (None, "image")) and v is not None
            out[k] = "sha256:" + image_sha256(v) if is_image_part else hash_images(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [hash_images(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("data:") and ";base64," in obj:
        return "sha256:" + image_sha256(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def content_key(*parts: Any) -> str:
    """A stable key (hex) of JSON-serialisable parts, images hashed by their bytes (never Python's hash)."""
    canon = json.dumps(hash_images(list(parts)), ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                       default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:32]


def request_key(request: ChatRequest, model: str, sampling: SamplingConfig, *extra: Any) -> str:
    """The cache key of one request to `model` (see the module docstring)."""
    samp = dataclasses.asdict(sampling)
    samp.pop("seed")  # the request's effective seed is keyed below
    seed = request.seed if request.seed is not None else sampling.seed
    return content_key("request", model or "", request.messages, request.continue_final_message, samp, seed,
                       *extra)


def read_json_reply(raw: str, read: Callable[[Any], dict | None], what: str, missing: str) -> Parsed:
    """Parse a JSON reply and read its value with `read(value) -> fields | None`; a reply that is
    not JSON, or whose value `read` rejects, is "unreadable {what}" (`missing`: what it lacked)."""
    from vlprm.jsonparse import parse_json_reply

    parsed = parse_json_reply(raw, expect=(dict, list))
    fields = read(parsed.value) if parsed.ok else None
    if fields is None:
        return None, f"unreadable {what}: {parsed.error or f'no {missing} in the JSON'}", parsed.repairs
    return fields, None, parsed.repairs


class ReplyStore:
    """Records keyed by "key": an append-only JSONL file (resumable), or memory when path is None."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.file = JsonlStore(path, key="key") if path else None
        self.memory: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        return self.file.get(key) if self.file is not None else self.memory.get(key)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, record: dict) -> None:
        if self.file is not None:
            self.file.append(record)
        else:
            self.memory[record["key"]] = record

    def records(self) -> list[dict]:
        return self.file.values() if self.file is not None else list(self.memory.values())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class Call:
    """One request to make (or find in the cache).

    parse: reads the reply text (None: keep the raw text only); meta: stored with the record;
    key: a key computed by the caller (e.g. a batch file's custom_id), default `request_key`.
    """

    request: ChatRequest
    parse: Callable[[str], Parsed] | None = None
    meta: dict = field(default_factory=dict)
    key: str | None = None


@dataclass
class CachedCalls:
    """Ask `generator` what the store does not know yet; return one record per call.

    name: the stage ("describe", "verify", ...): request seeds derive from (seed, name, key)
    and counts go to `counts` as {name}_requests (asked now), {name}_cached (found),
    {name}_request_errors, {name}_failed (records used that are not ok) and
    {name}_image_unreadable. model: default the generator's. make_generator: builds the
    generator the first time something must be asked (an engine is not started for a run whose
    replies are all cached). missing_generator: what to tell the user when requests are not
    cached and there is no generator.
    """

    generator: Generator | None
    store: ReplyStore
    sampling: SamplingConfig
    name: str
    seed: int = 0
    progress: bool = True
    retry_failed: bool = False
    counts: Counter | None = None
    model: str | None = None
    missing_generator: str = "pass a generator"
    make_generator: Callable[[], Generator] | None = None

    def __post_init__(self):
        if self.counts is None:
            self.counts = Counter()
        if self.model is None:
            self.model = getattr(self.generator, "model", "") or ""

    def key(self, call: Call) -> str:
        """The call's key (its own, or `request_key` with this stage's seed)."""
        return call.key or request_key(call.request, self.model, self.sampling, self.seed)

    def _unreadable_image(self, call: Call, error: OSError) -> dict:
        self.counts[f"{self.name}_image_unreadable"] += 1
        return {"key": None, "model": self.model, **call.meta, "ok": False, "reason": "image_unreadable",
                "error": f"cannot read image: {error}", "repairs": [], "raw": None}

    def _record(self, call: Call, key: str, result) -> dict:
        base = {"key": key, "model": self.model, **call.meta}
        if not result.ok or not result.completions:
            self.counts[f"{self.name}_request_errors"] += 1
            return {**base, "ok": False, "reason": "request_error",
                    "error": f"{self.name} request failed: {result.error or 'no completion returned'}",
                    "repairs": [], "raw": None}
        raw = result.completions[0].text
        if call.parse is None:
            return {**base, "ok": True, "reason": None, "error": None, "repairs": [], "raw": raw}
        fields, error, repairs = call.parse(raw)
        return {**base, "ok": fields is not None, **(fields or {}), "reason": None if fields is not None
                else "unreadable", "error": error, "repairs": list(repairs), "raw": raw}

    def run(self, calls: Sequence[Call]) -> list[dict]:
        """The record of every call, in order: from the store, or asked now and stored."""
        out: list[dict | None] = [None] * len(calls)
        keys: list[str | None] = []
        todo: dict[str, Call] = {}
        for i, call in enumerate(calls):
            try:
                key = self.key(call)
            except OSError as e:  # an image file that cannot be read: no request can be made
                out[i] = self._unreadable_image(call, e)
                keys.append(None)
                continue
            keys.append(key)
            rec = self.store.get(key)
            if key not in todo and (rec is None or (self.retry_failed and not rec.get("ok"))):
                todo[key] = call
        found = {k for k in keys if k is not None and k not in todo}
        self.counts[f"{self.name}_cached"] += len(found)
        if todo:
            if self.generator is None and self.make_generator is not None:
                self.generator = self.make_generator()
            if self.generator is None:
                from vlprm.config import ConfigError

                raise ConfigError(f"{len(todo)} {self.name} request(s) are not cached and there is no model to ask: "
                                  f"{self.missing_generator}")
            reqs = [c.request if c.request.seed is not None
                    else dataclasses.replace(c.request, seed=stable_seed(self.seed, self.name, k), id=k)
                    for k, c in todo.items()]
            # No try/except: an engine failure must stop the run (per-request errors come back as results).
            results = self.generator.generate(reqs, self.sampling, progress=self.progress, desc=self.name)
            if len(results) != len(reqs):
                raise RuntimeError(f"{type(self.generator).__name__} returned {len(results)} results for "
                                   f"{len(reqs)} {self.name} requests")
            self.counts[f"{self.name}_requests"] += len(reqs)
            for (key, call), res in zip(todo.items(), results):
                self.store.put(self._record(call, key, res))
        used = set()
        for i, key in enumerate(keys):
            if key is None:
                continue
            out[i] = self.store.get(key)
            if key not in used:
                used.add(key)
                self.counts[f"{self.name}_failed"] += not out[i].get("ok")
        return out  # type: ignore[return-value]
