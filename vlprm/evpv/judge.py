"""A per-step judge as a Scorer, with or without the structured image description.

The judge reads the image, the question, (optionally) the description and all steps, and
replies with JSON, one verdict per step (`prompts.build_evpv_step_judge_messages`). Verdicts
map to rewards in [0, 1]: correct -> 1, incorrect -> 0, neutral -> 0.5 (`gate.judge_to_unit`
of +1 / -1 / 0). A step whose verdict cannot be read gets `fallback_score` (default 1.0: no
evidence of an error) and is counted. Used for VisualProcessBench describe-then-judge and as a
base scorer EVPV can gate; the step-judge SFT data uses the same prompt.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any, Mapping, Sequence

from vlprm.backends.base import ChatRequest, Generator, SamplingConfig
from vlprm.cache import Call, CachedCalls, Parsed, ReplyStore, read_json_reply
from vlprm.evpv.checklist import step_index, strip_visual_tags
from vlprm.evpv.description import ImageDescription
from vlprm.evpv.gate import judge_to_unit
from vlprm.prm.format import PRMSample
from vlprm.prm.scorer import StepScores
from vlprm.prompts import EVPV_STEP_JUDGE_VERSION, build_evpv_step_judge_messages

_VERDICTS = {"correct": 1.0, "right": 1.0, "true": 1.0, "valid": 1.0, "+": 1.0, "yes": 1.0, "1": 1.0,
             "incorrect": -1.0, "wrong": -1.0, "false": -1.0, "invalid": -1.0, "-": -1.0, "no": -1.0,
             "-1": -1.0, "error": -1.0, "neutral": 0.0, "partially correct": 0.0, "0": 0.0, "unclear": 0.0}


def _verdict(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else -1.0
    if isinstance(v, (int, float)) and float(v) in (1.0, 0.0, -1.0):
        return float(v)
    s = " ".join(str(v or "").lower().replace("_", " ").split()).strip(" .")
    return _VERDICTS.get(s)


def parse_step_verdicts(value: Any, n_steps: int) -> list[float | None] | None:
    """A judge's parsed JSON -> verdict in {+1, 0, -1} per step (None where missing), or None
    when no step verdict can be read. Accepts {"steps": [{"step", "verdict"}, ...]}, the bare
    list, a list of verdict strings by position, or {"1": "correct", ...}."""
    out: list[float | None] = [None] * n_steps
    if isinstance(value, dict):
        inner = next((value[k] for k in ("steps", "verdicts", "judgements", "judgments", "results") if k in value), None)
        if isinstance(inner, list):
            value = inner
        else:
            for k, v in value.items():
                idx = step_index(k, n_steps)
                if idx is not None:
                    out[idx] = _verdict(v.get("verdict") if isinstance(v, dict) else v)
    if isinstance(value, list):
        for pos, item in enumerate(value):
            if isinstance(item, dict):
                ref = next((item[k] for k in ("step", "index", "id", "step_number") if k in item), None)
                idx = step_index(ref, n_steps) if ref is not None else (pos if pos < n_steps else None)
                v = next((item[k] for k in ("verdict", "label", "correct", "judgement", "judgment", "result")
                          if k in item), None)
            else:
                idx, v = (pos if pos < n_steps else None), item
            if idx is not None:
                out[idx] = _verdict(v)
    return None if all(x is None for x in out) else out


def read_verdicts(n_steps: int, raw: str) -> Parsed:
    """A judge reply -> the fields of its cache record (a verdict per step), or an error."""
    def read(value):
        verdicts = parse_step_verdicts(value, n_steps)
        return {"verdicts": verdicts} if verdicts is not None else None

    return read_json_reply(raw, read, "verdicts", "step verdicts")


class StepJudgeScorer:
    """Scorer: a VLM judges every step (see the module docstring).

    Args:
        generator: the judge.
        descriptions: {sample id: ImageDescription} (or a callable sample -> description) for
            the describe-then-judge condition; None judges without a description.
        show_image: attach the image (default True).
        fallback_score: reward of a step whose verdict cannot be read.
        store: a `ReplyStore` caching replies (default: memory); sampling: default greedy, 1024 tokens.
    """

    name = "step_judge"

    def __init__(self, generator: Generator, *, descriptions: Mapping[str, ImageDescription] | Any | None = None,
                 show_image: bool = True, fallback_score: float = 1.0, store: ReplyStore | None = None,
                 sampling: SamplingConfig | None = None, seed: int = 0, progress: bool = True):
        self.generator = generator
        self.descriptions = descriptions
        self.show_image = show_image
        self.fallback_score = float(fallback_score)
        self.store = store if store is not None else ReplyStore()
        self.sampling = (sampling or SamplingConfig(n=1, temperature=0.0, max_tokens=1024)).replace(n=1)
        self.seed = seed
        self.progress = progress
        self.counts: Counter = Counter()

    def _description(self, sample: PRMSample) -> ImageDescription | None:
        if self.descriptions is None:
            return None
        if callable(self.descriptions):
            return self.descriptions(sample)
        return self.descriptions.get(str(sample.id))

    def _call(self, s: PRMSample, steps: list[str]) -> Call:
        desc = self._description(s)
        msgs = build_evpv_step_judge_messages(s.question, steps, list(s.images) if self.show_image else None,
                                              desc.to_text() if desc is not None else None)
        return Call(ChatRequest(messages=msgs), parse=partial(read_verdicts, len(steps)),
                    meta={"sample_id": s.id, "prompt_version": EVPV_STEP_JUDGE_VERSION})

    def score(self, samples: Sequence[PRMSample], **_) -> list[StepScores]:
        steps = [strip_visual_tags(s.steps) for s in samples]
        asked: Counter = Counter()
        calls = CachedCalls(self.generator, self.store, self.sampling, name="judge", seed=self.seed,
                            progress=self.progress, counts=asked)
        records = calls.run([self._call(s, st) for s, st in zip(samples, steps)])
        for what in ("requests", "cached", "request_errors", "image_unreadable"):
            self.counts[what] += asked[f"judge_{what}"]
        out = []
        for s, st, rec in zip(samples, steps, records):
            verdicts = rec.get("verdicts") if rec.get("ok") else None
            if verdicts is None:
                self.counts["unreadable"] += 1
                verdicts = [None] * len(st)
            missing = sum(v is None for v in verdicts)
            self.counts["fallback_steps"] += missing
            p = [self.fallback_score if v is None else judge_to_unit(v) for v in verdicts]
            out.append(StepScores(p_plus=p, id=s.id, mode="step_judge",
                                  extra={"verdicts": verdicts, "fallback_steps": missing, "error": rec.get("error")}))
        return out
