"""EVPV as a scorer: describe the image, list each step's visual premises, verify them against
the description, and gate the base step rewards by the resulting reliabilities.

`EVPVScorer` wraps any base scorer with the `vlprm.prm.scorer.Scorer` protocol (a PRM, the
step judge of `vlprm.evpv.judge`, precomputed scores, a constant) and is itself a Scorer: it
returns `StepScores` whose `p_plus` are the gated step rewards, so best-of-N, the aggregations
(`vlprm.prm.aggregate`) and the metrics apply unchanged. `StepScores.extra["evpv"]` keeps the
base rewards, reliabilities, visual flags and what fell back.

Every model stage is cached in `cache_dir` (JSONL stores keyed by content hashes), so a killed
run resumes and a re-run with other gate settings or weights makes no model calls:
  descriptions.jsonl  per image set (image bytes + describer model + prompt version)
  checklists.jsonl    per solution (sample id + question + steps + extractor model + version)
  verify.jsonl        per solution, or per step with verify_granularity="step" (+ description)

A reply that cannot be read is recorded with its error and falls back: an unreadable
description or verifier reply gives `fallback_reliability` (default 1.0 = "no evidence of a
contradiction") to the steps it concerned; an unreadable checklist gives `checklist_fallback`
("none": no visual premises, or "step_text": the step text is its own premise). Fallbacks are
counted in `summary()`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.data.store import JsonlStore, stable_seed
from vlprm.evpv.checklist import StepPremises, checklist_from_tags, parse_extractor_value
from vlprm.evpv.common import content_key, safe_generate
from vlprm.evpv.description import DescribedImage, ImageDescription, describe_images
from vlprm.evpv.gate import GATES, GateConfig, gate_steps
from vlprm.evpv.verify import Finding, ReliabilityWeights, parse_verifier_value, step_reliabilities
from vlprm.jsonparse import parse_json_reply
from vlprm.prm.aggregate import STEP_AGGREGATIONS, aggregate
from vlprm.prm.format import PRMSample
from vlprm.prm.scorer import Scorer, StepScores
from vlprm.prompts import (
    EVPV_EXTRACT_VERSION,
    EVPV_VERIFY_VERSION,
    build_evpv_extract_messages,
    build_evpv_verify_messages,
)

CHECKLIST_SOURCES = ("auto", "policy", "extractor")
CHECKLIST_FALLBACKS = ("none", "step_text")
GRANULARITIES = ("solution", "step")


@dataclass
class EVPVConfig:
    """Settings of an EVPV scorer (YAML keys are the field names).

    gate / alpha / tau / low / temperature / propagate: the gate (`vlprm.evpv.gate`).
    weights: severity penalties {minor, major, critical, unverifiable}; unknown_severity: the
        severity of a contradiction whose severity is missing or unknown.
    fallback_reliability: the reliability of steps whose verification could not be read.
    checklist: "policy" (the steps' "[visual: ...]" tags), "extractor" (a model reads the
        steps), "auto" (tags when any step has one, else the extractor).
    checklist_fallback: premises of a step when the checklist cannot be read: "none" or
        "step_text".
    verify_granularity: one verifier call per "solution" or per visually dependent "step".
    verify_with_image: also show the verifier the image (default: the description only).
    describer / extractor / verifier: {"backend": "vllm"|"openai"|"hf", "model": ..., **kwargs}
        to make that role's generator; None: the generator passed to `build_evpv_scorer`.
    sampling_temperature, max_tokens_*: sampling of the three roles (greedy by default).
    cache_dir: where the stage caches live (None: in memory only).
    """

    gate: str = "multiply"
    alpha: float = 1.0
    tau: float = 0.5
    low: float = 0.0
    temperature: float = 0.1
    propagate: bool = False
    weights: dict = field(default_factory=lambda: {"minor": 0.2, "major": 0.6, "critical": 1.0,
                                                   "unverifiable": 0.05})
    unknown_severity: str = "major"
    fallback_reliability: float = 1.0
    checklist: str = "auto"
    checklist_fallback: str = "none"
    verify_granularity: str = "solution"
    verify_with_image: bool = False
    describer: dict | None = None
    extractor: dict | None = None
    verifier: dict | None = None
    sampling_temperature: float = 0.0
    max_tokens_describe: int = 1024
    max_tokens_extract: int = 512
    max_tokens_verify: int = 1024
    cache_dir: str | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.gate not in GATES:
            raise ValueError(f"EVPV gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        for name, allowed in (("checklist", CHECKLIST_SOURCES), ("checklist_fallback", CHECKLIST_FALLBACKS),
                              ("verify_granularity", GRANULARITIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"EVPV {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.fallback_reliability <= 1.0:
            raise ValueError(f"fallback_reliability must be in [0, 1], got {self.fallback_reliability}")
        self.reliability_weights()  # validate now
        self.gate_config()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "EVPVConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown EVPV config key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "weights" in d:
            d["weights"] = {**cls().weights, **(d["weights"] or {})}
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "EVPVConfig":
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data.get("evpv", data))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def gate_config(self) -> GateConfig:
        return GateConfig(kind=self.gate, alpha=self.alpha, tau=self.tau, low=self.low,
                          temperature=self.temperature, propagate=self.propagate)

    def reliability_weights(self) -> ReliabilityWeights:
        return ReliabilityWeights(unknown_severity=self.unknown_severity, **self.weights)


# --------------------------------------------------------------------------- base scorers


class PrecomputedScorer:
    """A Scorer over scores computed earlier: {sample id: StepScores | dict | list of P(+)}."""

    name = "precomputed"

    def __init__(self, scores: Mapping[str, Any]):
        self.scores = dict(scores)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> "PrecomputedScorer":
        """Rows with "id" and "p_plus" (the `vlprm.prm.scorer` CLI output)."""
        from vlprm.data.store import read_jsonl

        return cls({str(r["id"]): StepScores.from_dict(r) for r in read_jsonl(path) if "id" in r})

    def score(self, samples: Sequence[PRMSample], **_) -> list[StepScores]:
        out = []
        for s in samples:
            v = self.scores.get(str(s.id))
            if v is None:
                out.append(StepScores(p_plus=None, error=f"no precomputed score for sample {s.id!r}", id=s.id))
                continue
            st = v if isinstance(v, StepScores) else (StepScores.from_dict(v) if isinstance(v, Mapping)
                                                     else StepScores(p_plus=[float(x) for x in v]))
            if st.p_plus is not None and len(st.p_plus) != len(s.steps):
                out.append(StepScores(p_plus=None, id=s.id, error=f"precomputed score of {s.id!r} has "
                                      f"{len(st.p_plus)} steps, the sample {len(s.steps)}"))
                continue
            out.append(dataclasses.replace(st, id=s.id))
        return out


class ConstantScorer:
    """Every step gets the same reward: EVPV alone (the gated score is the reliability)."""

    name = "constant"

    def __init__(self, value: float = 1.0):
        self.value = float(value)

    def score(self, samples: Sequence[PRMSample], **_) -> list[StepScores]:
        return [StepScores(p_plus=[self.value] * len(s.steps), id=s.id, mode="constant") for s in samples]


# --------------------------------------------------------------------------- results


@dataclass
class EVPVResult:
    """Everything EVPV concluded about one sample."""

    id: str | None
    base: list[float] | None
    reliability: list[float]
    visual_dependent: list[bool]
    gated: list[float] | None
    premises: list[list[str]]
    findings: list[Finding] = field(default_factory=list)
    description_ok: bool = True
    checklist_source: str = "policy"
    verify_ok: bool = True
    fallback_steps: int = 0
    error: str | None = None
    num_tokens: int = 0

    def to_step_scores(self) -> StepScores:
        extra = {"evpv": {"base": self.base, "reliability": self.reliability,
                          "visual_dependent": self.visual_dependent, "premises": self.premises,
                          "findings": [f.to_dict() for f in self.findings],
                          "description_ok": self.description_ok, "checklist_source": self.checklist_source,
                          "verify_ok": self.verify_ok, "fallback_steps": self.fallback_steps}}
        return StepScores(p_plus=self.gated, num_tokens=self.num_tokens, error=self.error, id=self.id,
                          mode="evpv", extra=extra)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        return d

    def mean_reliability(self) -> float | None:
        """Mean reliability over visually dependent steps (None when there are none)."""
        rs = [r for r, v in zip(self.reliability, self.visual_dependent) if v]
        return sum(rs) / len(rs) if rs else None


def _base_values(v: Any) -> tuple[list[float] | None, int, str | None]:
    if v is None:
        return None, 0, "no base score"
    if isinstance(v, StepScores):
        return v.p_plus, v.num_tokens, v.error
    if isinstance(v, Mapping):
        return v.get("p_plus"), int(v.get("num_tokens") or 0), v.get("error")
    return [float(x) for x in v], 0, None


def make_role_generator(spec: Mapping[str, Any] | None, shared: Generator | None) -> Generator | None:
    """The generator of one EVPV role from its config ({"backend", "model", **kwargs}) or the shared one."""
    if not spec:
        return shared
    from vlprm.backends import make_generator

    spec = dict(spec)
    try:
        backend, model = spec.pop("backend"), spec.pop("model")
    except KeyError as e:
        raise ValueError(f"EVPV role config {spec!r} needs 'backend' and 'model'") from e
    return make_generator(backend, model, **spec)


# --------------------------------------------------------------------------- the scorer


class _MemoryStore:
    """The get/append part of JsonlStore over a dict (EVPV without a cache_dir)."""

    def __init__(self, records: dict):
        self.records = records

    def get(self, key, default=None):
        return self.records.get(key, default)

    def append(self, rec: dict) -> None:
        self.records[rec["key"]] = rec


class EVPVScorer:
    """Explicit visual premise verification around a base step scorer (see the module docstring).

    Args:
        config: `EVPVConfig`.
        base_scorer: anything with `score(samples) -> list[StepScores]` (None: rewards must be
            passed to `score_detailed(base_scores=...)`).
        describer / extractor / verifier: the generators of the three roles (extractor is only
            needed for the "extractor"/"auto" checklist when steps carry no tags).
    """

    name = "evpv"

    def __init__(self, config: EVPVConfig | None = None, base_scorer: Scorer | None = None, *,
                 describer: Generator | None = None, extractor: Generator | None = None,
                 verifier: Generator | None = None):
        self.config = config or EVPVConfig()
        self.base_scorer = base_scorer
        self.describer = describer
        self.extractor = extractor
        self.verifier = verifier
        self.gate_cfg = self.config.gate_config()
        self.weights = self.config.reliability_weights()
        self.counts: Counter = Counter()
        self.seconds = 0.0
        cache = Path(self.config.cache_dir) if self.config.cache_dir else None
        self.stores: dict[str, JsonlStore | None] = {
            name: (JsonlStore(cache / f"{name}.jsonl", key="key") if cache else None)
            for name in ("descriptions", "checklists", "verify")}
        self._memory: dict[str, dict[str, dict]] = {"descriptions": {}, "checklists": {}, "verify": {}}

    # -- cache helpers ----------------------------------------------------------------------

    def _get(self, stage: str, key: str) -> dict | None:
        store = self.stores[stage]
        return store.get(key) if store is not None else self._memory[stage].get(key)

    def _put(self, stage: str, rec: dict) -> None:
        store = self.stores[stage]
        if store is not None:
            store.append(rec)
        else:
            self._memory[stage][rec["key"]] = rec

    def close(self) -> None:
        for s in self.stores.values():
            if s is not None:
                s.close()

    def _sampling(self, max_tokens: int) -> SamplingConfig:
        return SamplingConfig(n=1, temperature=self.config.sampling_temperature, max_tokens=max_tokens)

    # -- stages -----------------------------------------------------------------------------

    def describe(self, samples: Sequence[PRMSample]) -> list[DescribedImage]:
        """The description of each sample's image set (cached per image content)."""
        store = self.stores["descriptions"]
        if store is None:  # (an empty JsonlStore is falsy: test for None)
            store = _MemoryStore(self._memory["descriptions"])
        got = describe_images([s.images for s in samples], self.describer, store=store,  # type: ignore[arg-type]
                              sampling=self._sampling(self.config.max_tokens_describe), seed=self.config.seed,
                              progress=self.config.progress)
        new = {d.key: d for d in got if d.key and not d.cached}
        self.counts["describe_requests"] += len(new)
        self.counts["describe_cached"] += len({d.key for d in got if d.key and d.cached})
        self.counts["describe_failed"] += sum(1 for d in new.values() if not d.ok)
        return got

    def checklists(self, samples: Sequence[PRMSample]) -> list[tuple[list[str], list[StepPremises]]]:
        """(steps without tags, premises per step) for each sample."""
        cfg = self.config
        out: list[tuple[list[str], list[StepPremises]] | None] = [None] * len(samples)
        need: list[tuple[int, str, list[str]]] = []
        for i, s in enumerate(samples):
            clean, tagged, untagged = checklist_from_tags(s.steps)
            if cfg.checklist == "policy" or (cfg.checklist == "auto" and tagged is not None):
                if tagged is None:  # policy mode but the policy wrote no tags
                    self.counts["checklist_untagged_solutions"] += 1
                    tagged = self._fallback_checklist(clean)
                self.counts["checklist_untagged_steps"] += len(untagged) if len(untagged) < len(s.steps) else 0
                out[i] = (clean, tagged)
                continue
            key = content_key("checklist", s.id, s.question, clean, self._model(self.extractor), EVPV_EXTRACT_VERSION)
            rec = self._get("checklists", key)
            if rec is not None:
                self.counts["checklist_cached"] += 1
                out[i] = (clean, self._checklist_from_record(rec, clean))
            else:
                need.append((i, key, clean))
        if need:
            if self.extractor is None:
                raise ValueError(f"{len(need)} solution(s) carry no [visual: ...] tags and no extractor was "
                                 "given: set the EVPV config's extractor: {backend, model}, pass a generator, "
                                 "or use checklist: policy")
            reqs = [ChatRequest(messages=build_evpv_extract_messages(samples[i].question, clean),
                                seed=stable_seed(cfg.seed, "extract", key), id=key) for i, key, clean in need]
            results = safe_generate(self.extractor, reqs, self._sampling(cfg.max_tokens_extract),
                                              progress=cfg.progress, desc="EVPV checklist")
            for (i, key, clean), res in zip(need, results):
                self.counts["checklist_requests"] += 1
                raw = res.texts[0] if res.ok and res.completions else None
                per_step, err, repairs = None, None, []
                if not res.ok:
                    err = f"extractor request failed: {res.error}"
                else:
                    parsed = parse_json_reply(raw, expect=(dict, list))
                    repairs = parsed.repairs
                    per_step = parse_extractor_value(parsed.value, len(clean)) if parsed.ok else None
                    if per_step is None:
                        err = f"unreadable checklist: {parsed.error or 'no per-step premises in the JSON'}"
                rec = {"key": key, "sample_id": samples[i].id, "model": self._model(self.extractor),
                       "prompt_version": EVPV_EXTRACT_VERSION, "ok": per_step is not None,
                       "premises": per_step, "error": err, "repairs": repairs, "raw": raw}
                self._put("checklists", rec)
                out[i] = (clean, self._checklist_from_record(rec, clean))
        return out  # type: ignore[return-value]

    def _fallback_checklist(self, clean: list[str]) -> list[StepPremises]:
        if self.config.checklist_fallback == "step_text":
            return [StepPremises(step=k, premises=[t], source="fallback") for k, t in enumerate(clean)]
        return [StepPremises(step=k, premises=[], source="fallback") for k in range(len(clean))]

    def _checklist_from_record(self, rec: dict, clean: list[str]) -> list[StepPremises]:
        if not rec.get("ok"):
            self.counts["checklist_failed"] += 1
            return self._fallback_checklist(clean)
        per_step = rec["premises"]
        out = []
        for k in range(len(clean)):
            prem = per_step[k] if k < len(per_step) else None
            if prem is None:  # a step the extractor skipped
                self.counts["checklist_missing_steps"] += 1
                out.extend(self._fallback_checklist([clean[k]])[:1])
                out[-1].step = k
            else:
                out.append(StepPremises(step=k, premises=list(prem), source="extractor"))
        return out

    @staticmethod
    def _model(gen: Generator | None) -> str:
        return getattr(gen, "model", "") or "" if gen is not None else ""

    def verify(self, samples: Sequence[PRMSample], clean_steps: Sequence[list[str]],
               checklists: Sequence[list[StepPremises]], descriptions: Sequence[ImageDescription | None]
               ) -> list[tuple[list[Finding], list[bool]]]:
        """(findings, per-step "verification could not be read" flags) for each sample.

        A None description means none is available: its visually dependent steps fall back.
        """
        cfg = self.config
        n = len(samples)
        findings: list[list[Finding]] = [[] for _ in range(n)]
        failed: list[list[bool]] = [[False] * len(clean_steps[i]) for i in range(n)]
        jobs: list[tuple[int, int | None, str, list[tuple[int, list[str]]], ImageDescription]] = []
        for i, s in enumerate(samples):
            dep = [(p.step, p.premises) for p in checklists[i] if p.visual_dependent]
            if not dep:
                continue
            desc = descriptions[i]
            if desc is None:
                for k, _ in dep:
                    failed[i][k] = True
                continue
            units = [(None, dep)] if cfg.verify_granularity == "solution" else [(k, [(k, p)]) for k, p in dep]
            for step, items in units:
                key = content_key("verify", s.id, step, s.question, items, desc.content_hash(), self._model(self.verifier),
                         EVPV_VERIFY_VERSION, cfg.verify_with_image)
                jobs.append((i, step, key, items, desc))
        todo = []
        for job in jobs:
            rec = self._get("verify", job[2])
            if rec is None:
                todo.append(job)
            else:
                self.counts["verify_cached"] += 1
        if todo:
            if self.verifier is None:
                raise ValueError(f"{len(todo)} verification(s) are not cached and no verifier was given: set the "
                                 "EVPV config's verifier: {backend, model} or pass a generator")
            reqs = []
            for i, step, key, items, desc in todo:
                msgs = build_evpv_verify_messages(samples[i].question, desc.to_text(),
                                                  [(k + 1, p) for k, p in items],
                                                  images=list(samples[i].images) if cfg.verify_with_image else None)
                reqs.append(ChatRequest(messages=msgs, seed=stable_seed(cfg.seed, "verify", key), id=key))
            results = safe_generate(self.verifier, reqs, self._sampling(cfg.max_tokens_verify), progress=cfg.progress,
                                             desc="EVPV verify")
            for (i, step, key, items, desc), res in zip(todo, results):
                self.counts["verify_requests"] += 1
                raw = res.texts[0] if res.ok and res.completions else None
                reading, err, repairs = None, None, []
                if not res.ok:
                    err = f"verifier request failed: {res.error}"
                else:
                    parsed = parse_json_reply(raw, expect=(dict, list))
                    repairs = parsed.repairs
                    reading = parse_verifier_value(parsed.value, items, default_step=step) if parsed.ok else None
                    if reading is None:
                        err = f"unreadable verification: {parsed.error or 'no premise verdicts in the JSON'}"
                rec = {"key": key, "sample_id": samples[i].id, "step": step, "model": self._model(self.verifier),
                       "prompt_version": EVPV_VERIFY_VERSION, "ok": reading is not None,
                       "findings": [f.to_dict() for f in reading.findings] if reading else None,
                       "n_entries": reading.n_entries if reading else 0,
                       "n_unattributed": reading.n_unattributed if reading else 0,
                       "n_unknown_status": reading.n_unknown_status if reading else 0,
                       "error": err, "repairs": repairs, "raw": raw}
                self._put("verify", rec)
        for i, step, key, items, desc in jobs:
            rec = self._get("verify", key)
            if not rec.get("ok"):
                self.counts["verify_failed"] += 1
                for k, _ in items:
                    failed[i][k] = True
                continue
            self.counts["verify_unattributed"] += rec.get("n_unattributed", 0)
            findings[i].extend(Finding.from_dict(f) for f in rec["findings"])
        return list(zip(findings, failed))

    # -- public -----------------------------------------------------------------------------

    def score_detailed(self, samples: Sequence[PRMSample], *, base_scores: Sequence[Any] | None = None,
                       descriptions: Sequence[ImageDescription | None] | Mapping[str, ImageDescription] | None = None
                       ) -> list[EVPVResult]:
        """Run every stage and gate. base_scores: per-sample StepScores / P(+) lists aligned
        with samples (default: the base scorer on the samples with their tags removed).
        descriptions: use these instead of describing the images (oracle or corrupted ones;
        a list aligned with samples, or {sample id: description})."""
        t0 = time.time()
        cfg = self.config
        checks = self.checklists(samples)
        clean_samples = [dataclasses.replace(s, steps=clean, labels=None, soft_labels=None)
                         for s, (clean, _) in zip(samples, checks)]
        if descriptions is None:
            described = self.describe(samples)
            descs: list[ImageDescription | None] = []
            for s, d in zip(samples, described):
                if d.ok:
                    descs.append(d.description)
                else:
                    descs.append(None)
                    self.counts["no_image" if d.error == "no image" else "description_unavailable"] += 1
        elif isinstance(descriptions, Mapping):
            descs = [descriptions.get(str(s.id)) for s in samples]
        else:
            if len(descriptions) != len(samples):
                raise ValueError(f"{len(descriptions)} descriptions for {len(samples)} samples")
            descs = list(descriptions)
        verified = self.verify(samples, [c for c, _ in checks], [p for _, p in checks], descs)
        if base_scores is None:
            if self.base_scorer is None:
                raise ValueError("EVPVScorer has no base scorer; pass base_scores=")
            base_scores = self.base_scorer.score(clean_samples)
        if len(base_scores) != len(samples):
            raise ValueError(f"{len(base_scores)} base scores for {len(samples)} samples")
        results = []
        for i, s in enumerate(samples):
            clean, premises = checks[i]
            fnds, failed = verified[i]
            dep = [p.visual_dependent for p in premises]
            rel = step_reliabilities(fnds, len(clean), self.weights)
            # A sample without images has nothing to check: its steps are never gated.
            no_image = not s.images and descriptions is None
            if no_image:
                dep = [False] * len(clean)
            n_fallback = 0
            for k in range(len(clean)):
                if dep[k] and failed[k]:
                    rel[k] = cfg.fallback_reliability
                    n_fallback += 1
            self.counts["fallback_steps"] += n_fallback
            self.counts["visual_steps"] += sum(dep)
            self.counts["steps"] += len(clean)
            base, ntok, err = _base_values(base_scores[i])
            if base is not None and len(base) != len(clean):
                base, err = None, f"base scorer returned {len(base)} step scores for {len(clean)} steps"
            gated = gate_steps(base, rel, dep, self.gate_cfg) if base is not None else None
            if gated is None:
                self.counts["base_failed"] += 1
            results.append(EVPVResult(
                id=s.id, base=list(base) if base is not None else None, reliability=rel, visual_dependent=dep,
                gated=gated, premises=[p.premises for p in premises], findings=fnds,
                description_ok=descs[i] is not None, checklist_source=premises[0].source if premises else "none",
                verify_ok=not any(failed[k] for k in range(len(clean)) if dep[k]), fallback_steps=n_fallback,
                error=err if gated is None else None, num_tokens=ntok))
        self.counts["samples"] += len(samples)
        self.seconds += time.time() - t0
        return results

    def score(self, samples: Sequence[PRMSample], **_) -> list[StepScores]:
        """The Scorer protocol: gated step rewards as StepScores (details in extra["evpv"])."""
        return [r.to_step_scores() for r in self.score_detailed(samples)]

    def summary(self) -> dict:
        """Counts of requests, cache hits, unreadable replies and fallbacks so far."""
        c = dict(self.counts)
        c["seconds"] = round(self.seconds, 2)
        c["config"] = {k: v for k, v in self.config.to_dict().items()
                       if k not in ("describer", "extractor", "verifier")}
        return c

    def summary_line(self) -> str:
        c = self.counts
        return (f"EVPV: {c['samples']} samples, {c['steps']} steps ({c['visual_steps']} visual); "
                f"describe {c['describe_requests']} new/{c['describe_failed']} unreadable; "
                f"checklist {c['checklist_requests']} new/{c['checklist_cached']} cached/{c['checklist_failed']} unreadable; "
                f"verify {c['verify_requests']} new/{c['verify_cached']} cached/{c['verify_failed']} unreadable; "
                f"{c['fallback_steps']} steps fell back to reliability {self.config.fallback_reliability}; "
                f"{c['description_unavailable']} samples without a description; {self.seconds:.1f}s")


def build_evpv_scorer(config: EVPVConfig | Mapping[str, Any] | str | os.PathLike | None, base_scorer: Scorer | None,
                      generator: Generator | None = None) -> EVPVScorer:
    """An EVPV scorer from a config (EVPVConfig, dict, or YAML path), a base scorer and the
    generator shared by the describer, extractor and verifier roles (a role with its own
    {"backend", "model"} entry in the config gets its own generator)."""
    if isinstance(config, EVPVConfig):
        cfg = config
    elif isinstance(config, (str, os.PathLike)):
        cfg = EVPVConfig.from_yaml(config)
    else:
        cfg = EVPVConfig.from_dict(config)
    return EVPVScorer(cfg, base_scorer,
                      describer=make_role_generator(cfg.describer, generator),
                      extractor=make_role_generator(cfg.extractor, generator),
                      verifier=make_role_generator(cfg.verifier, generator))


def score_candidates(results: Sequence[EVPVResult], methods: Sequence[str] = STEP_AGGREGATIONS) -> list[dict]:
    """{method: aggregated gated score} per result (the candidate "score" dict of `vlprm.metrics`)."""
    return [{m: (aggregate(r.gated, m) if r.gated is not None else None) for m in methods} for r in results]
