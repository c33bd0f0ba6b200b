"""EVPV as a scorer: describe the image, list each step's visual premises, verify them against
the description, and gate the base step rewards by the resulting reliabilities.

`EVPVScorer` wraps any base scorer with the `vlprm.prm.scorer.Scorer` protocol (a PRM, the
step judge of `vlprm.evpv.judge`, precomputed scores, a constant) and is itself a Scorer: it
returns `StepScores` whose `p_plus` are the gated step rewards, so best-of-N, the aggregations
(`vlprm.prm.aggregate`) and the metrics apply unchanged. `StepScores.extra["evpv"]` keeps the
base rewards, reliabilities, visual flags and what fell back.

Every model stage goes through `vlprm.cache.CachedCalls`, cached in `cache_dir` (JSONL stores
keyed by content, images by their bytes), so a killed run resumes and a re-run with other gate
settings or weights makes no model calls:
  descriptions.jsonl  per image set (image bytes + describer model + prompt version)
  checklists.jsonl    per extractor request (question + steps + model + sampling)
  verify.jsonl        per verifier request: a solution's, or a step's with verify_granularity="step"

A reply that cannot be read, or a request the backend reports as failed, is recorded with its
error and falls back: an unreadable description or verification gives `fallback_reliability`
(default 1.0 = "no evidence of a contradiction") to the steps it concerned; an unreadable
checklist gives `checklist_fallback` ("none": no visual premises, or "step_text": the step text
is its own premise). Fallbacks are counted in `summary()`. A generator that raises (a dead
engine) stops the scorer: nothing is gated on a reliability no model produced.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vlprm.backends.base import Generator, SamplingConfig
from vlprm.cache import CachedCalls, ReplyStore
from vlprm.evpv.checklist import build_checklists
from vlprm.evpv.config import EVPVConfig, make_role_generator
from vlprm.evpv.description import DescribedImage, ImageDescription, describe_images
from vlprm.evpv.gate import gate_steps
from vlprm.evpv.verify import Finding, VerifyJob, run_verification, step_reliabilities
from vlprm.prm.format import PRMSample
from vlprm.prm.scorer import Scorer, StepScores

STAGES = ("descriptions", "checklists", "verify")


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


class EVPVScorer:
    """Explicit visual premise verification around a base step scorer (see the module docstring).

    Args:
        config: `EVPVConfig`.
        base_scorer: anything with `score(samples) -> list[StepScores]` (None: rewards must be
            passed to `score_detailed(base_scores=...)`).
        describer / extractor / verifier: the generators of the three roles (extractor is only
            needed for the "extractor"/"auto" checklist when steps carry no tags; verifier may be
            a `vlprm.evpv.verify.Verifier`, which needs no model).
    """

    name = "evpv"

    def __init__(self, config: EVPVConfig | None = None, base_scorer: Scorer | None = None, *,
                 describer: Generator | None = None, extractor: Generator | None = None,
                 verifier: Any = None):
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
        self.stores = {name: ReplyStore(cache / f"{name}.jsonl" if cache else None) for name in STAGES}

    def close(self) -> None:
        for s in self.stores.values():
            s.close()

    def _calls(self, stage: str, name: str, generator: Any, max_tokens: int, role: str) -> CachedCalls:
        cfg = self.config
        return CachedCalls(generator, self.stores[stage],
                           SamplingConfig(n=1, temperature=cfg.sampling_temperature, max_tokens=max_tokens),
                           name=name, seed=cfg.seed, progress=cfg.progress, retry_failed=cfg.retry_failed,
                           counts=self.counts, missing_generator=f"set the EVPV config's {role}: {{backend, model}} "
                                                                 "or pass a generator")

    # -- stages -----------------------------------------------------------------------------

    def describe(self, samples: Sequence[PRMSample]) -> list[DescribedImage]:
        """The description of each sample's image set (cached per image content)."""
        cfg = self.config
        return describe_images([s.images for s in samples], self.describer, store=self.stores["descriptions"],
                               sampling=SamplingConfig(n=1, temperature=cfg.sampling_temperature,
                                                       max_tokens=cfg.max_tokens_describe),
                               seed=cfg.seed, progress=cfg.progress, retry_failed=cfg.retry_failed,
                               counts=self.counts)

    def checklists(self, samples: Sequence[PRMSample]):
        """(steps without tags, premises per step) for each sample."""
        calls = self._calls("checklists", "checklist", self.extractor, self.config.max_tokens_extract, "extractor")
        return build_checklists(samples, calls, source=self.config.checklist, fallback=self.config.checklist_fallback)

    def verify(self, samples: Sequence[PRMSample], clean_steps: Sequence[list[str]], checklists: Sequence[list],
               descriptions: Sequence[ImageDescription | None]) -> list[tuple[list[Finding], list[bool]]]:
        """(findings, per-step "verification could not be read" flags) for each sample.

        A None description means none is available: its visually dependent steps fall back.
        """
        cfg = self.config
        findings: list[list[Finding]] = [[] for _ in samples]
        failed: list[list[bool]] = [[False] * len(c) for c in clean_steps]
        jobs: list[tuple[int, VerifyJob]] = []
        for i, s in enumerate(samples):
            dep = [(p.step, p.premises) for p in checklists[i] if p.visual_dependent]
            if dep and descriptions[i] is None:
                for k, _ in dep:
                    failed[i][k] = True
            elif dep:
                units = [(None, dep)] if cfg.verify_granularity == "solution" else [(k, [(k, p)]) for k, p in dep]
                jobs.extend((i, VerifyJob(s.id, step, s.question, items, descriptions[i], list(s.images)))
                            for step, items in units)
        calls = self._calls("verify", "verify", self.verifier, cfg.max_tokens_verify, "verifier")
        done = run_verification([j for _, j in jobs], self.verifier, calls, with_image=cfg.verify_with_image)
        for (i, job), got in zip(jobs, done):
            if not got.ok:
                for k, _ in job.items:
                    failed[i][k] = True
                continue
            self.counts["verify_unattributed"] += got.n_unattributed
            findings[i].extend(got.findings)
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
                f"{c['describe_request_errors'] + c['checklist_request_errors'] + c['verify_request_errors']} "
                f"requests failed; {c['fallback_steps']} steps fell back to reliability {self.config.fallback_reliability}; "
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
