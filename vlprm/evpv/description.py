"""Structured image descriptions: the schema, reading a describer's reply, the per-image cache.

A description is question-independent, so it is cached per image: the key is the SHA-256 of the
image bytes plus the describer model and the prompt version. Schema (all lists of short strings):

    {"summary":   "a 3x3 grid of coloured circles",
     "objects":   ["green circle at the top-left", ...],
     "numbers":   ["17 at the bottom-left of the first triangle", ...],
     "labels":    ["a question mark at the bottom-left", ...],
     "relations": ["the grid has 3 rows and 3 columns", ...]}

Every item (and the summary) is one *fact*; the corruption ablations drop or flip facts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.cache import Call, CachedCalls, Parsed, ReplyStore, content_key, image_sha256
from vlprm.jsonparse import parse_json_reply
from vlprm.prompts import EVPV_DESCRIBE_VERSION, build_evpv_describe_messages

LIST_FIELDS = ("objects", "numbers", "labels", "relations")
FIELDS = ("summary",) + LIST_FIELDS

# Keys models use for our fields.
_ALIASES = {
    "summary": ("summary", "caption", "description", "overview", "scene", "image_type", "type"),
    "objects": ("objects", "shapes", "elements", "items", "entities"),
    "numbers": ("numbers", "numbers_visible", "values", "numeric_values", "digits"),
    "labels": ("labels", "text", "texts", "symbols", "legends", "annotations"),
    "relations": ("relations", "relationships", "spatial_relations", "geometry", "layout"),
}


def _item_text(item: Any) -> str:
    """One list item as a phrase: strings as-is, numbers as text, dicts as their values joined."""
    if item is None:
        return ""
    if isinstance(item, bool):
        return str(item).lower()
    if isinstance(item, (int, float)):
        return f"{item:g}" if isinstance(item, float) else str(item)
    if isinstance(item, str):
        return " ".join(item.split())
    if isinstance(item, (list, tuple)):
        return ", ".join(t for t in (_item_text(x) for x in item) if t)
    if isinstance(item, dict):
        parts = []
        for k, v in item.items():
            t = _item_text(v)
            if not t:
                continue
            # Descriptive keys contribute their value; others keep the key for context.
            parts.append(t if k in ("name", "object", "shape", "type", "value", "text", "label", "number",
                                    "description", "color", "colour", "size") else f"{k} {t}")
        return " ".join(parts)
    return str(item)


@dataclass
class ImageDescription:
    """A structured description of an image (see the module docstring for the schema)."""

    summary: str = ""
    objects: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)

    def facts(self) -> list[tuple[str, int, str]]:
        """(field, index, text) of every fact; the summary is fact ("summary", 0)."""
        out = [("summary", 0, self.summary)] if self.summary else []
        for f in LIST_FIELDS:
            out.extend((f, i, t) for i, t in enumerate(getattr(self, f)))
        return out

    @property
    def n_facts(self) -> int:
        return len(self.facts())

    def is_empty(self) -> bool:
        return self.n_facts == 0

    def to_dict(self) -> dict:
        return {f: (getattr(self, f) if f == "summary" else list(getattr(self, f))) for f in FIELDS}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ImageDescription":
        desc = normalize_description(d or {})
        return desc if desc is not None else cls()

    def to_text(self) -> str:
        """The description as the JSON text prompts show (one key per line)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def normalize_description(value: Any) -> ImageDescription | None:
    """A describer's parsed JSON -> ImageDescription, or None if it has none of our fields.

    Accepts common key aliases ("caption", "shapes", "text", "relationships", ...) and items
    written as dicts or numbers; items are de-duplicated in order.
    """
    if not isinstance(value, dict):
        return None
    lower = {str(k).strip().lower().replace(" ", "_"): v for k, v in value.items()}
    found = False
    out = ImageDescription()
    for f in FIELDS:
        for alias in _ALIASES[f]:
            if alias in lower and lower[alias] not in (None, ""):
                found = True
                v = lower[alias]
                if f == "summary":
                    if not out.summary:
                        out.summary = _item_text(v)
                else:
                    items = v if isinstance(v, list) else [v]
                    texts = getattr(out, f)
                    for it in items:
                        t = _item_text(it)
                        if t and t not in texts:
                            texts.append(t)
            elif alias in lower:
                found = True
    return out if found else None


# --------------------------------------------------------------------------- oracle descriptions

_COLOR_WORDS = {"red", "orange", "yellow", "green", "blue", "purple", "black", "white", "gray", "grey", "pink",
                "brown"}
_OBJECT_WORDS = _COLOR_WORDS | {"small", "medium", "large", "circle", "square", "triangle", "star", "hexagon",
                                "pentagon", "diamond", "rectangle", "disk", "queen", "jug", "hand"}
_RELATION_WORDS = {"left", "right", "above", "below", "top", "bottom", "between", "inside", "overlap",
                   "row", "rows", "column", "columns", "center", "upper", "lower", "next", "adjacent"}


def description_from_facts(facts: Sequence[str], summary: str | None = None) -> ImageDescription:
    """An oracle description built from ground-truth perception facts (our puzzles' records).

    The first fact that starts "The image shows" (else `summary`) is the summary; the rest are
    sorted by a simple rule: a question mark -> labels, a digit -> numbers, colour/shape/size
    words -> objects, position words -> relations, otherwise objects. The rule only decides
    where a fact is shown; every fact is kept verbatim.
    """
    desc = ImageDescription(summary=summary or "")
    for fact in facts:
        t = " ".join(str(fact).split())
        if not t:
            continue
        words = set(re.findall(r"[a-z]+", t.lower()))
        if not desc.summary and t.lower().startswith(("the image shows", "the image is")):
            desc.summary = t
        elif "question mark" in t.lower() or "?" in t:
            desc.labels.append(t)
        elif re.search(r"\d", t):
            desc.numbers.append(t)
        elif words & _OBJECT_WORDS:
            desc.objects.append(t)
        elif words & _RELATION_WORDS:
            desc.relations.append(t)
        else:
            desc.objects.append(t)
    return desc


# --------------------------------------------------------------------------- describing


def description_key(images: Sequence[Any], model: str, prompt_version: str = EVPV_DESCRIBE_VERSION) -> str:
    """Cache key of the description of `images` (by their bytes) by `model` with this prompt version."""
    return content_key("describe", [image_sha256(img) for img in images], model or "", prompt_version)


@dataclass
class DescribedImage:
    """The description of one image set and how it was obtained.

    ok is False when the describer's reply could not be read (or the request failed, or the
    images could not be read); `description` is then empty and `error` says why.
    """

    key: str
    description: ImageDescription
    ok: bool
    error: str | None = None
    repairs: list[str] = field(default_factory=list)
    raw: str | None = None


def _record_to_described(rec: dict) -> DescribedImage:
    desc = ImageDescription.from_dict(rec.get("description")) if rec.get("ok") else ImageDescription()
    return DescribedImage(key=rec.get("key") or "", description=desc, ok=bool(rec.get("ok")), error=rec.get("error"),
                          repairs=list(rec.get("repairs") or []), raw=rec.get("raw"))


def parse_description_reply(text: str | None) -> tuple[ImageDescription | None, str | None, list[str]]:
    """(description or None, error, repairs) for a describer's reply text."""
    res = parse_json_reply(text, expect=dict)
    if not res.ok:
        return None, f"unreadable description: {res.error}", res.repairs
    desc = normalize_description(res.value)
    if desc is None:
        keys = ", ".join(map(str, list(res.value)[:6]))
        return None, f"description JSON has none of the keys {', '.join(FIELDS)} (got: {keys})", res.repairs
    return desc, None, res.repairs


def read_description(raw: str) -> Parsed:
    """A describer reply -> the fields of its cache record, or an error."""
    desc, error, repairs = parse_description_reply(raw)
    return ({"description": desc.to_dict()} if desc is not None else None), error, repairs


def describe_images(image_sets: Sequence[Sequence[Any]], generator: Generator | None, *,
                    store: ReplyStore | None = None, model: str | None = None,
                    sampling: SamplingConfig | None = None, seed: int = 0, progress: bool = True,
                    retry_failed: bool = False, counts: Counter | None = None) -> list[DescribedImage]:
    """Describe each image set (one description per set, shared by identical sets).

    Records in `store` (keyed by `description_key`) are reused; new ones are stored as they are
    parsed, failures included (not asked again unless retry_failed). An image set that is empty
    or unreadable gets ok=False with the reason. Counts go to `counts` as describe_*.
    """
    calls = CachedCalls(generator, store if store is not None else ReplyStore(),
                        (sampling or SamplingConfig(n=1, temperature=0.0, max_tokens=1024)).replace(n=1),
                        name="describe", seed=seed, progress=progress, retry_failed=retry_failed, counts=counts,
                        model=model, missing_generator="set the EVPV config's describer: {backend, model} "
                                                       "or pass a generator")
    out: list[DescribedImage | None] = [None] * len(image_sets)
    todo: list[Call] = []
    where: list[int] = []
    key_memo: dict[tuple, str] = {}
    for i, images in enumerate(image_sets):
        if not images:
            out[i] = DescribedImage(key="", description=ImageDescription(), ok=False, error="no image")
            continue
        paths = [str(x) if isinstance(x, os.PathLike) else x for x in images]
        memo_key = tuple(x if isinstance(x, str) else id(x) for x in paths)
        try:
            key = key_memo.get(memo_key) or description_key(images, calls.model)
            key_memo[memo_key] = key  # candidates of one problem share an image: hash it once
        except OSError as e:
            out[i] = DescribedImage(key="", description=ImageDescription(), ok=False,
                                    error=f"cannot read image: {e}")
            continue
        todo.append(Call(ChatRequest(messages=build_evpv_describe_messages(paths)), parse=read_description,
                         meta={"images": [x for x in paths if isinstance(x, str)],
                               "prompt_version": EVPV_DESCRIBE_VERSION}, key=key))
        where.append(i)
    for i, rec in zip(where, calls.run(todo)):
        out[i] = _record_to_described(rec)
    return out  # type: ignore[return-value]
