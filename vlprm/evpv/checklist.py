"""The visual-dependency checklist: which facts about the image each step relies on.

Two sources:
- policy: the policy was asked (`prompts.build_policy_messages_tagged`) to end every step with
  "[visual: fact; fact]" or "[visual: none]"; `parse_visual_tags` reads and removes the tags.
- extractor: a model reads the question and the steps and returns JSON, one premise list per
  step (`prompts.build_evpv_extract_messages`); `parse_extractor_value` reads it.

A step with no premises has visual_dependent=False and its reward is never gated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Sequence

from vlprm.backends.base import ChatRequest
from vlprm.cache import Call, CachedCalls, Parsed, read_json_reply
from vlprm.prompts import build_evpv_extract_messages

_TAG_RE = re.compile(r"[ \t]*\[\s*visual\s*:\s*(?P<body>[^\]\n]*)(?:\]|$)", re.IGNORECASE | re.MULTILINE)
_NONE_WORDS = {"", "none", "n/a", "na", "no", "nothing", "-", "null", "no visual facts", "no visual fact"}
_STEP_NUM_RE = re.compile(r"(\d+)")


@dataclass
class StepPremises:
    """The visual premises of one step (0-based `step`). source: "policy", "extractor" or
    "fallback" (the checklist could not be read; see `EVPVConfig.checklist_fallback`)."""

    step: int
    premises: list[str] = field(default_factory=list)
    source: str = "policy"

    @property
    def visual_dependent(self) -> bool:
        return bool(self.premises)

    def to_dict(self) -> dict:
        return {"step": self.step, "premises": list(self.premises), "source": self.source,
                "visual_dependent": self.visual_dependent}

    @classmethod
    def from_dict(cls, d: dict) -> "StepPremises":
        return cls(step=int(d["step"]), premises=list(d.get("premises") or []), source=d.get("source", "policy"))


def _split_premises(body: str) -> list[str]:
    if body.strip().lower().strip(" .") in _NONE_WORDS:
        return []
    return [p.strip(" .") for p in body.split(";") if p.strip(" .") and p.strip(" .").lower() not in _NONE_WORDS]


def parse_visual_tags(text: str) -> tuple[str, list[str] | None]:
    """(step text without its tags, premises) — premises is None when the step has no tag,
    [] for "[visual: none]". Several tags in one step are merged; an unclosed tag at the end
    of a truncated step still counts."""
    matches = list(_TAG_RE.finditer(text))
    if not matches:
        return text, None
    premises: list[str] = []
    for m in matches:
        for p in _split_premises(m.group("body")):
            if p not in premises:
                premises.append(p)
    clean = _TAG_RE.sub("", text)
    clean = re.sub(r"[ \t]+\n", "\n", clean).strip()
    return clean, premises


def checklist_from_tags(steps: Sequence[str]) -> tuple[list[str], list[StepPremises] | None, list[int]]:
    """(steps with tags removed, checklist or None if no step is tagged, indices of untagged steps)."""
    clean, checklist, untagged = [], [], []
    for i, s in enumerate(steps):
        c, prem = parse_visual_tags(s)
        clean.append(c)
        if prem is None:
            untagged.append(i)
            prem = []
        checklist.append(StepPremises(step=i, premises=prem, source="policy"))
    if len(untagged) == len(steps):
        return clean, None, untagged
    return clean, checklist, untagged


def strip_visual_tags(steps: Sequence[str]) -> list[str]:
    """Steps without their "[visual: ...]" tags (what a PRM or a judge should see)."""
    return [parse_visual_tags(s)[0] for s in steps]


def _premise_list(v: Any) -> list[str] | None:
    if v is None:
        return []
    if isinstance(v, str):
        return _split_premises(v)
    if isinstance(v, (int, float)):
        return [str(v)]
    if isinstance(v, dict):
        for k in ("visual_premises", "premises", "visual", "facts", "visual_facts"):
            if k in v:
                return _premise_list(v[k])
        return None
    if isinstance(v, list):
        out = []
        for x in v:
            if isinstance(x, dict):
                x = x.get("premise") or x.get("fact") or x.get("text") or " ".join(map(str, x.values()))
            t = " ".join(str(x).split()).strip(" .")
            if t and t.lower() not in _NONE_WORDS and t not in out:
                out.append(t)
        return out
    return None


def step_index(v: Any, n_steps: int) -> int | None:
    """1-based step reference (int, "2", "Step 2") -> 0-based index in range, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        k = int(v)
    elif isinstance(v, str):
        m = _STEP_NUM_RE.search(v)
        if not m:
            return None
        k = int(m.group(1))
    else:
        return None
    return k - 1 if 1 <= k <= n_steps else None


def parse_extractor_value(value: Any, n_steps: int) -> list[list[str] | None] | None:
    """An extractor's parsed JSON -> premises per step (None for a step it did not cover),
    or None when the value has no recognisable shape or covers no step.

    Accepted: {"steps": [{"step": 1, "visual_premises": [...]}, ...]}, the bare list of those,
    a list of lists (by position), or {"1": [...], "Step 2": [...]}.
    """
    out: list[list[str] | None] = [None] * n_steps
    entries: list[tuple[int | None, Any]] = []
    if isinstance(value, dict):
        inner = next((value[k] for k in ("steps", "checklist", "premises", "visual_premises") if k in value), None)
        if isinstance(inner, list):
            value = inner
        else:
            for k, v in value.items():
                idx = step_index(k, n_steps)
                if idx is not None:
                    entries.append((idx, v))
    if isinstance(value, list):
        for pos, item in enumerate(value):
            if isinstance(item, dict):
                ref = next((item[k] for k in ("step", "index", "id", "step_number") if k in item), None)
                idx = step_index(ref, n_steps) if ref is not None else (pos if pos < n_steps else None)
                entries.append((idx, item))
            elif isinstance(item, (list, str)) or item is None:
                entries.append((pos if pos < n_steps else None, item))
    for idx, v in entries:
        if idx is None:
            continue
        prem = _premise_list(v)
        if prem is not None:
            out[idx] = (out[idx] or []) + [p for p in prem if p not in (out[idx] or [])]
    if all(x is None for x in out):
        return None
    return out


# --------------------------------------------------------------------------- the checklist stage


def fallback_checklist(clean: Sequence[str], fallback: str) -> list[StepPremises]:
    """Premises of steps whose checklist cannot be read: none, or the step text itself ("step_text")."""
    return [StepPremises(step=k, premises=[t] if fallback == "step_text" else [], source="fallback")
            for k, t in enumerate(clean)]


def read_checklist(n_steps: int, raw: str) -> Parsed:
    """An extractor reply -> the fields of its cache record (premises per step), or an error."""
    def read(value):
        per_step = parse_extractor_value(value, n_steps)
        return {"premises": per_step} if per_step is not None else None

    return read_json_reply(raw, read, "checklist", "per-step premises")


def _from_record(rec: dict, clean: Sequence[str], fallback: str, calls: CachedCalls) -> list[StepPremises]:
    if not rec.get("ok"):
        return fallback_checklist(clean, fallback)
    per_step = rec["premises"]
    out = []
    for k in range(len(clean)):
        prem = per_step[k] if k < len(per_step) else None
        if prem is None:  # a step the extractor skipped
            calls.counts["checklist_missing_steps"] += 1
            out.append(StepPremises(step=k, premises=fallback_checklist([clean[k]], fallback)[0].premises,
                                    source="fallback"))
        else:
            out.append(StepPremises(step=k, premises=list(prem), source="extractor"))
    return out


def build_checklists(samples: Sequence[Any], calls: CachedCalls, *, source: str = "auto",
                     fallback: str = "none") -> list[tuple[list[str], list[StepPremises]]]:
    """(steps without tags, premises per step) of each sample (question, steps, id).

    source "policy" reads the steps' tags, "extractor" asks `calls`' model, "auto" reads the tags
    when a solution has any, else asks. Unreadable checklists get `fallback_checklist`.
    """
    out: list[tuple[list[str], list[StepPremises]] | None] = [None] * len(samples)
    ask: list[tuple[int, list[str]]] = []
    for i, s in enumerate(samples):
        clean, tagged, untagged = checklist_from_tags(s.steps)
        if source == "policy" or (source == "auto" and tagged is not None):
            if tagged is None:  # policy mode but the policy wrote no tags
                calls.counts["checklist_untagged_solutions"] += 1
                tagged = fallback_checklist(clean, fallback)
            calls.counts["checklist_untagged_steps"] += len(untagged) if len(untagged) < len(s.steps) else 0
            out[i] = (clean, tagged)
        else:
            ask.append((i, clean))
    records = calls.run([Call(ChatRequest(messages=build_evpv_extract_messages(samples[i].question, clean)),
                              parse=partial(read_checklist, len(clean)), meta={"sample_id": samples[i].id})
                         for i, clean in ask])
    for (i, clean), rec in zip(ask, records):
        out[i] = (clean, _from_record(rec, clean, fallback, calls))
    return out  # type: ignore[return-value]
