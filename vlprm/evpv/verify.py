"""Premise verification: read the verifier's findings and turn them into a reliability.

The verifier lists, per premise, whether the description supports it, contradicts it (with a
severity) or cannot settle it. The reliability of a step is computed here, from the findings,
never taken from a number the model wrote:

    r(step) = prod over its contradictions c of (1 - w[severity(c)])
              * (1 - w_unverifiable) ** (number of its unverifiable premises)

with w = {minor: 0.2, major: 0.6, critical: 1.0} and w_unverifiable = 0.05 by default
(`ReliabilityWeights`). r is in [0, 1]; 1 means "no evidence of a contradiction". A
contradiction with a missing or unknown severity counts as `unknown_severity` ("major").
Findings are cached, reliabilities are not: changing the weights never needs new model calls.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol, Sequence, runtime_checkable

from vlprm.backends.base import ChatRequest
from vlprm.cache import Call, CachedCalls, Parsed, read_json_reply
from vlprm.config import ConfigError
from vlprm.evpv.description import ImageDescription
from vlprm.prompts import build_evpv_verify_messages

SEVERITIES = ("minor", "major", "critical")
STATUSES = ("contradicted", "unverifiable")

_SUPPORTED = {"supported", "support", "consistent", "verified", "true", "correct", "confirmed", "ok", "yes",
              "matches", "match", "entailed"}
_CONTRADICTED = {"contradicted", "contradiction", "contradicts", "false", "incorrect", "wrong", "inconsistent",
                 "refuted", "mismatch", "no"}
_UNVERIFIABLE = {"unverifiable", "unknown", "unclear", "not_mentioned", "not mentioned", "cannot verify",
                 "cannot be verified", "not verifiable", "uncertain", "insufficient", "unsure", "n/a"}
_SEVERITY_ALIASES = {"minor": "minor", "low": "minor", "small": "minor", "major": "major", "medium": "major",
                     "moderate": "major", "significant": "major", "critical": "critical", "high": "critical",
                     "severe": "critical", "fatal": "critical"}


@dataclass
class SeverityWeights:
    """Penalty weights: a contradiction of severity s multiplies the reliability by 1 - w[s];
    each unverifiable premise by 1 - unverifiable."""

    minor: float = field(default=0.2, metadata={"help": "penalty of a minor contradiction"})
    major: float = field(default=0.6, metadata={"help": "penalty of a major contradiction"})
    critical: float = field(default=1.0, metadata={"help": "penalty of a critical contradiction"})
    unverifiable: float = field(default=0.05, metadata={"help": "penalty of each unverifiable premise"})

    def __post_init__(self):
        for name in ("minor", "major", "critical", "unverifiable"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"reliability weight {name}={v} must be in [0, 1]")


@dataclass
class ReliabilityWeights(SeverityWeights):
    """The severity weights plus the severity a contradiction without a readable one counts as."""

    unknown_severity: str = "major"

    def __post_init__(self):
        super().__post_init__()
        if self.unknown_severity not in SEVERITIES:
            raise ConfigError(f"unknown_severity must be one of {SEVERITIES}, got {self.unknown_severity!r}")

    def penalty(self, finding: "Finding") -> float:
        if finding.status == "unverifiable":
            return float(self.unverifiable)
        sev = finding.severity if finding.severity in SEVERITIES else self.unknown_severity
        return float(getattr(self, sev))


@dataclass
class Finding:
    """A premise of step `step` (0-based) that the description contradicts or cannot settle."""

    step: int
    status: str  # "contradicted" | "unverifiable"
    premise: str = ""
    severity: str | None = None  # minor | major | critical for contradictions
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(step=int(d["step"]), status=d["status"], premise=d.get("premise", ""),
                   severity=d.get("severity"), reason=d.get("reason", ""))


def reliability(findings: Sequence[Finding], weights: ReliabilityWeights | None = None) -> float:
    """The product of (1 - penalty) over findings; 1.0 for none. Always in [0, 1]."""
    weights = weights or ReliabilityWeights()
    r = 1.0
    for f in findings:
        r *= 1.0 - weights.penalty(f)
    return min(1.0, max(0.0, r))


def step_reliabilities(findings: Sequence[Finding], n_steps: int,
                       weights: ReliabilityWeights | None = None) -> list[float]:
    """Reliability of every step from the findings attributed to it."""
    by_step: list[list[Finding]] = [[] for _ in range(n_steps)]
    for f in findings:
        if 0 <= f.step < n_steps:
            by_step[f.step].append(f)
    return [reliability(fs, weights) for fs in by_step]


# --------------------------------------------------------------------------- reading replies


def _norm(s: Any) -> str:
    return " ".join(str(s or "").lower().replace("_", " ").split()).strip(" .")


def _status(v: Any) -> str | None:
    """Normalised status: "supported", "contradicted", "unverifiable", or None if unknown."""
    s = _norm(v)
    if isinstance(v, bool):
        return "supported" if v else "contradicted"
    if s in _SUPPORTED:
        return "supported"
    if s in _CONTRADICTED:
        return "contradicted"
    if s in _UNVERIFIABLE or s.replace(" ", "_") in _UNVERIFIABLE:
        return "unverifiable"
    return None


def _severity(v: Any) -> str | None:
    return _SEVERITY_ALIASES.get(_norm(v))


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def _attribute(premise: str, checklist: Sequence[tuple[int, Sequence[str]]]) -> int | None:
    """The step whose premise text overlaps `premise` most (Jaccard on words), or None."""
    w = _words(premise)
    best, best_score = None, 0.0
    for step, premises in checklist:
        for p in premises:
            pw = _words(p)
            if not w or not pw:
                continue
            score = len(w & pw) / len(w | pw)
            if score > best_score:
                best, best_score = step, score
    return best


def _step_ref(v: Any) -> int | None:
    """1-based step reference -> 0-based index (range checked by the caller)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v) - 1
    m = re.search(r"\d+", str(v))
    return int(m.group(0)) - 1 if m else None


@dataclass
class VerifierReading:
    """What a verifier reply said: findings, plus entries that could not be attributed to a
    checked step or had an unknown status (counted, not used)."""

    findings: list[Finding] = field(default_factory=list)
    n_entries: int = 0
    n_unattributed: int = 0
    n_unknown_status: int = 0


def parse_verifier_value(value: Any, checklist: Sequence[tuple[int, Sequence[str]]],
                         default_step: int | None = None) -> VerifierReading | None:
    """A verifier's parsed JSON -> findings, or None when the shape is not recognised.

    checklist: (0-based step, premises) of the checked steps; only those steps can receive
    findings. default_step: the step every finding belongs to (per-step verification).
    Accepted shapes: {"premises": [{"step", "premise", "status", "severity", "reason"}, ...]},
    {"contradictions": [...], "unverifiable": [...]}, or a bare list of premise entries.
    A finding without a step number is attributed by matching its premise text. A reply whose
    entries all lack a readable status is None (unreadable); an empty list means "no findings".
    """
    checked = {s for s, _ in checklist}
    entries: list[tuple[dict, str | None]] = []  # (entry, status forced by the container)
    recognised = False
    if isinstance(value, dict):
        for key in ("premises", "results", "checks", "findings", "verdicts", "steps"):
            if isinstance(value.get(key), list):
                entries.extend((e, None) for e in value[key])
                recognised = True
                break
        for key, forced in (("contradictions", "contradicted"), ("unverifiable", "unverifiable"),
                            ("unverified", "unverifiable")):
            if isinstance(value.get(key), list):
                entries.extend((e, forced) for e in value[key])
                recognised = True
        if not recognised and ("status" in value or "severity" in value):
            entries.append((value, None))  # a single premise entry
            recognised = True
    elif isinstance(value, list):
        entries.extend((e, None) for e in value)
        recognised = True
    if not recognised:
        return None
    reading = VerifierReading()
    for entry, forced in entries:
        reading.n_entries += 1
        if isinstance(entry, str):
            entry = {"premise": entry}
        if not isinstance(entry, dict):
            reading.n_unknown_status += 1
            continue
        status = forced
        if status is None:
            raw_status = next((entry[k] for k in ("status", "verdict", "label", "result") if k in entry), None)
            status = _status(raw_status)
            if status is None and raw_status is None and _severity(entry.get("severity")):
                status = "contradicted"  # an entry with only a severity is a contradiction
        if status is None:
            reading.n_unknown_status += 1
            continue
        if status == "supported":
            continue
        premise = str(entry.get("premise") or entry.get("fact") or entry.get("claim") or "")
        step = default_step
        if step is None:
            step = _step_ref(entry.get("step", entry.get("step_number")))
            if step is None or step not in checked:
                step = _attribute(premise, checklist) if premise else None
        if step is None or step not in checked:
            reading.n_unattributed += 1
            continue
        severity = _severity(entry.get("severity")) if status == "contradicted" else None
        reading.findings.append(Finding(step=step, status=status, premise=premise, severity=severity,
                                        reason=str(entry.get("reason") or entry.get("evidence") or "")))
    if reading.n_entries and reading.n_unknown_status == reading.n_entries:
        return None  # entries, but not one with a status we understand: not a verification
    return reading


# --------------------------------------------------------------------------- the verify stage


@runtime_checkable
class Verifier(Protocol):
    """A verifier that needs no model (e.g. word matching): it checks (0-based step, premise)
    pairs against a description and returns the contradicted and unverifiable ones."""

    def verify(self, description: ImageDescription, premises: Sequence[tuple[int, str]]) -> list[Finding]:
        ...


@dataclass
class VerifyJob:
    """One verification: the premises of a solution (step None) or of one step (0-based)."""

    sample_id: str | None
    step: int | None
    question: str
    items: list[tuple[int, list[str]]]  # (0-based step, premises) of the checked steps
    description: ImageDescription
    images: list = field(default_factory=list)


@dataclass
class Verification:
    """What the verification of one job concluded; ok False: it could not be read (or asked)."""

    ok: bool
    findings: list[Finding] = field(default_factory=list)
    n_unattributed: int = 0


def read_verification(items: Sequence[tuple[int, Sequence[str]]], step: int | None, raw: str) -> Parsed:
    """A verifier reply -> the fields of its cache record (findings and counts), or an error."""
    def read(value):
        reading = parse_verifier_value(value, items, default_step=step)
        if reading is None:
            return None
        return {"findings": [f.to_dict() for f in reading.findings], "n_entries": reading.n_entries,
                "n_unattributed": reading.n_unattributed, "n_unknown_status": reading.n_unknown_status}

    return read_json_reply(raw, read, "verification", "premise verdicts")


def run_verification(jobs: Sequence[VerifyJob], verifier: Any, calls: CachedCalls, *,
                     with_image: bool = False) -> list[Verification]:
    """Verify every job: with a `Verifier` directly, with a model through `calls` (cached)."""
    if isinstance(verifier, Verifier):
        calls.counts[f"{calls.name}_local"] += len(jobs)
        return [Verification(True, verifier.verify(j.description, [(k, p) for k, ps in j.items for p in ps]))
                for j in jobs]
    records = calls.run([Call(ChatRequest(messages=build_evpv_verify_messages(
                                  j.question, j.description.to_text(), [(k + 1, p) for k, p in j.items],
                                  images=list(j.images) if with_image else None)),
                              parse=partial(read_verification, j.items, j.step),
                              meta={"sample_id": j.sample_id, "step": j.step}) for j in jobs])
    return [Verification(True, [Finding.from_dict(f) for f in rec["findings"]], rec.get("n_unattributed", 0))
            if rec.get("ok") else Verification(False) for rec in records]
