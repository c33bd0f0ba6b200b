"""Score solutions with a PRM: P(+) for every step, in the one PRM format (`vlprm.prm.format`).

Two backends behind one small protocol, `Scorer.score(samples) -> list[StepScores]`:

* `HFScorer` (transformers, the default). ``mode="one_pass"`` reads every step's P(+) from ONE
  forward pass over the conversation with "+" placeholders as labels (causal attention: a
  placeholder never influences its own or an earlier step's score). Samples are batched with
  right padding; image tensors are concatenated in sample order. ``mode="per_step"`` is the
  reference: one pass per step prefix (the conversation cut after step k), reading its last
  label; the tests check both agree. ``mode="outcome"`` scores the whole solution as one step
  (the PRM used as an outcome reward model).
* `VLLMScorer` (a `vllm.LLM` engine, shared per process via `get_engine`). vLLM's prompt
  logprobs only give the top-k tokens and the actual token, so "-" is missing wherever it is
  not in the top-k, and scoring a second time with "-" placeholders would condition later steps
  on "-" labels. Instead each step is one request whose prompt is the conversation cut right
  after that step's assistant header, generating one token with ``logprob_token_ids=[+, -]``
  (exact raw logprobs of both labels). The prompts of a sample are prefixes of each other and
  are submitted longest first, so prefix caching makes the cost about one pass.

P(+) = softmax over the ("+", "-") logits at the position just before the label.

Every scorer builds its inputs with the settings the PRM was trained with (system prompt, step
suffix, pixel bounds, label tokens: `vlprm.prm.settings`), read from ``vlprm_prm.json`` in the
PRM directory; explicit arguments win key by key. A PRM without that record and without
explicit settings is refused (`ConfigError`), never scored with a guessed prompt.

Every `StepScores` reports ``num_tokens``: the PRM input tokens read for the sample (one pass:
the conversation up to its last label, image tokens included, in every mode and backend; the
per-step mode's prefixes summed are in ``extra["prompt_tokens"]``). A sample that cannot be scored (unreadable image, too long) gets ``p_plus=None`` and
an ``error``; the rest of the batch goes on.

CLI: ``python -m vlprm.prm.scorer --prm DIR --input samples.jsonl --out scores.jsonl``
(``--settings FILE`` or ``--system-prompt ... --step-suffix ...`` for a PRM without a record).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from vlprm.config import ConfigError
from vlprm.prm.format import (
    ASSISTANT_HEADER, LabelTokens, PRMSample, encode_prm, load_images, load_prm_processor, render_text,
)
from vlprm.prm.settings import AUTO, PRMSettings, resolve_prm_settings

MODES = ("one_pass", "per_step", "outcome")
OUTCOME_JOINER = "\n\n"


# --------------------------------------------------------------------------- records


@dataclass
class StepScores:
    """The PRM's verdict on one sample: P(+) per step (None when it could not be scored)."""

    p_plus: list[float] | None
    num_tokens: int = 0
    error: str | None = None
    id: str | None = None
    mode: str = "one_pass"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.p_plus is not None

    def to_dict(self) -> dict:
        return {"id": self.id, "p_plus": self.p_plus, "num_tokens": self.num_tokens,
                "error": self.error, "mode": self.mode, "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "StepScores":
        return cls(p_plus=d.get("p_plus"), num_tokens=d.get("num_tokens", 0), error=d.get("error"),
                   id=d.get("id"), mode=d.get("mode", "one_pass"), extra=d.get("extra") or {})


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores PRM samples step by step (the PRM scorers here, EVPV, test stubs)."""

    def score(self, samples: Sequence[PRMSample]) -> list[StepScores]:
        """One StepScores per sample, in order; failures are reported in StepScores.error."""
        ...


# --------------------------------------------------------------------------- helpers


def scorer_settings(model: str | os.PathLike, settings: PRMSettings | str | os.PathLike | None, **overrides,
                    ) -> PRMSettings:
    """The settings a scorer uses: a PRMSettings as given, else `resolve_prm_settings` with
    `settings` (a record file/dir) and the explicit overrides (system_prompt, step_suffix, pixels)."""
    if isinstance(settings, PRMSettings):
        return settings
    return resolve_prm_settings(model, {**overrides, "settings": settings})


def build_prm_sample(problem: Any, steps: Sequence[Any], id: str | None = None) -> PRMSample:
    """A PRM sample for a solution of `problem`: the question with its options block (the text
    the policy saw, without the answer-format instructions), the step texts and the images."""
    from vlprm.prompts import question_with_options

    texts = [s.text if hasattr(s, "text") else str(s) for s in steps]
    return PRMSample(question=question_with_options(problem), steps=texts,
                     images=list(problem.images), id=id)


def unlabelled(sample: PRMSample, n_steps: int | None = None) -> PRMSample:
    """The sample without labels (every label turn gets the "+" placeholder), optionally cut to
    its first n_steps steps. Scoring never shows the PRM gold labels of earlier steps."""
    steps = sample.steps if n_steps is None else sample.steps[:n_steps]
    return PRMSample(question=sample.question, steps=list(steps), images=list(sample.images), id=sample.id)


def outcome_sample(sample: PRMSample) -> PRMSample:
    """The whole solution as one step (for scoring the PRM as an outcome reward model)."""
    return PRMSample(question=sample.question, steps=[OUTCOME_JOINER.join(sample.steps)],
                     images=sample.images, id=sample.id)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"scorer mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


# --------------------------------------------------------------------------- transformers


class HFScorer:
    """PRM scoring with transformers.

    Args:
        model: PRM directory or hub id (ignored for loading when `hf_model`/`processor` given).
        mode: "one_pass" (default), "per_step" (reference) or "outcome".
        settings: a `PRMSettings`, or a settings record (file or dir) to use instead of the PRM's
            own `vlprm_prm.json` (the default).
        system_prompt / step_suffix / min_pixels / max_pixels: explicit values that win over the
            record ("auto" / None: the record's). system_prompt: a variant name, "file:PATH",
            the prompt text, or None (the chat template's default system turn).
        batch_size: samples (sequences) per forward pass.
        max_length: samples longer than this many tokens are reported as errors.
        dtype / device / attn_implementation: model loading ("auto": bf16 on GPU, fp32 on CPU).
        hf_model / processor: an already loaded model and processor to use instead.
    """

    name = "hf"

    def __init__(self, model: str | os.PathLike, *, mode: str = "one_pass", settings=None,
                 system_prompt: str | None = AUTO, step_suffix: str | None = None,
                 batch_size: int = 8, max_length: int | None = None, dtype: str = "auto",
                 device: str | None = None, min_pixels: int | None = None, max_pixels: int | None = None,
                 attn_implementation: str | None = None, hf_model=None, processor=None):
        self.model_path = os.fspath(model)
        self.mode = _check_mode(mode)
        # Before any model is loaded: a PRM without known settings is refused at once.
        self.settings = scorer_settings(self.model_path, settings, system_prompt=system_prompt,
                                        step_suffix=step_suffix, min_pixels=min_pixels, max_pixels=max_pixels)
        self.batch_size = max(1, int(batch_size))
        self.max_length = max_length
        if hf_model is None:
            from vlprm.backends.hf_backend import load_vlm

            hf_model, _ = load_vlm(self.model_path, dtype=dtype, device=device,
                                   attn_implementation=attn_implementation)
        self.hf_model = hf_model.eval()
        self.processor = processor or load_prm_processor(self.model_path, self.settings.min_pixels,
                                                         self.settings.max_pixels)
        self.tokens = LabelTokens.for_settings(self.processor.tokenizer, self.settings)
        pad = self.processor.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self._label_weight = None

    # -- encoding ----------------------------------------------------------------------------

    def _encode(self, sample: PRMSample, images: list) -> dict:
        return encode_prm(self.processor, sample, settings=self.settings, tokens=self.tokens,
                          images=images, max_length=self.max_length)

    def _units(self, sample: PRMSample) -> list[dict]:
        """The sequences to run for one sample (one, or one per step prefix in per_step mode)."""
        images = load_images(sample.images)
        if self.mode == "outcome":
            return [self._encode(outcome_sample(sample), images)]
        if self.mode == "one_pass":
            return [self._encode(unlabelled(sample), images)]
        return [self._encode(unlabelled(sample, k), images) for k in range(1, len(sample.steps) + 1)]

    # -- model -------------------------------------------------------------------------------

    def _label_logits(self, hidden):
        """("+", "-") logits from final hidden states, computed in fp32 from the LM head rows."""
        import torch

        if self._label_weight is None:
            head = self.hf_model.get_output_embeddings()
            ids = [self.tokens.plus_id, self.tokens.minus_id]
            w = head.weight[ids].detach().float()
            b = head.bias[ids].detach().float() if getattr(head, "bias", None) is not None else None
            self._label_weight = (w, b)
        w, b = self._label_weight
        out = hidden.float() @ w.T
        return out + b if b is not None else out

    def _run(self, encs: list[dict]) -> list[list[float]]:
        """P(+) at every label position of each encoding (a right-padded batch)."""
        import torch

        device = self.hf_model.device
        lens = [e["label_positions"][-1] for e in encs]  # nothing after the last label is needed
        width = max(lens)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        types = torch.zeros((len(encs), width), dtype=torch.int)
        image_ids = (getattr(self.hf_model.config, "image_token_id", None),
                     getattr(self.hf_model.config, "video_token_id", None))
        for b, (e, n) in enumerate(zip(encs, lens)):
            ids[b, :n] = torch.tensor(e["input_ids"][:n], dtype=torch.long)
            mask[b, :n] = 1
            if "mm_token_type_ids" in e:
                types[b, :n] = torch.tensor(e["mm_token_type_ids"][:n], dtype=torch.int)
            else:  # Qwen2.5-VL builds 3-D (mrope) image positions only from these types
                for t, tid in enumerate(image_ids, 1):
                    if tid is not None:
                        types[b, :n][ids[b, :n] == tid] = t
        kw: dict[str, Any] = {}
        with_images = [e for e in encs if "pixel_values" in e]
        if with_images:
            kw["mm_token_type_ids"] = types.to(device)
            kw["pixel_values"] = torch.cat([e["pixel_values"] for e in with_images]).to(
                device, dtype=self.hf_model.dtype)
            kw["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_images]).to(device)
        rows = [b for b, e in enumerate(encs) for _ in e["label_positions"]]
        cols = [p - 1 for e in encs for p in e["label_positions"]]
        with torch.inference_mode():
            ids, mask = ids.to(device), mask.to(device)
            base = getattr(self.hf_model, "model", None)
            if base is not None and self.hf_model.get_output_embeddings() is not None:
                hidden = base(input_ids=ids, attention_mask=mask, use_cache=False, **kw).last_hidden_state
                logits = self._label_logits(hidden[rows, cols])
            else:  # a model without the usual base/head split: full logits, then pick
                full = self.hf_model(input_ids=ids, attention_mask=mask, use_cache=False, **kw).logits
                logits = full[rows, cols][:, [self.tokens.plus_id, self.tokens.minus_id]].float()
            p_plus = torch.softmax(logits, dim=-1)[:, 0].cpu().tolist()
        out, i = [], 0
        for e in encs:
            n = len(e["label_positions"])
            out.append(p_plus[i:i + n])
            i += n
        return out

    # -- public ------------------------------------------------------------------------------

    def score(self, samples: Sequence[PRMSample], *, progress: bool = False) -> list[StepScores]:
        """Score every sample; results are in sample order, failures carry `error`."""
        from tqdm.auto import tqdm

        results: list[StepScores | None] = [None] * len(samples)
        chunk = self.batch_size * 4  # encode a few batches ahead: sort by length, bound memory
        bar = tqdm(total=len(samples), desc=f"PRM scoring ({self.mode})", disable=not progress)
        for start in range(0, len(samples), chunk):
            units: list[tuple[int, dict]] = []
            for i in range(start, min(start + chunk, len(samples))):
                s = samples[i]
                try:
                    units.extend((i, e) for e in self._units(s))
                except (ValueError, OSError) as e:  # ImageLoadError is a ValueError
                    results[i] = StepScores(p_plus=None, error=_error(e), id=s.id, mode=self.mode)
            units.sort(key=lambda u: -u[1]["label_positions"][-1])
            got: dict[int, list[tuple[int, list[float]]]] = {}
            for b in range(0, len(units), self.batch_size):
                batch = units[b:b + self.batch_size]
                for (i, e), p in zip(batch, self._run([e for _, e in batch])):
                    got.setdefault(i, []).append((e["label_positions"][-1], p))
            for i, parts in got.items():
                parts.sort()  # per-step prefixes in step order (their lengths increase)
                if self.mode == "per_step":
                    p_plus = [p[-1] for _, p in parts]
                else:
                    p_plus = parts[0][1]
                # num_tokens: the whole conversation up to its last label in every mode (what the
                # VL-PRM reward divides by); per_step's prefixes summed go to extra["prompt_tokens"].
                results[i] = StepScores(p_plus=[float(x) for x in p_plus], num_tokens=parts[-1][0],
                                        id=samples[i].id, mode=self.mode,
                                        extra={"prompt_tokens": sum(n for n, _ in parts)})
            bar.update(min(start + chunk, len(samples)) - start)
        bar.close()
        return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- vLLM


class VLLMScorer:
    """PRM scoring with a `vllm.LLM` engine (see the module docstring for the method).

    Args:
        model: PRM directory or hub id.
        mode: "one_pass"/"per_step" (the same computation here: one request per step, prefix
            cached) or "outcome".
        settings, system_prompt, step_suffix, min_pixels, max_pixels: as for `HFScorer`.
        max_model_len, engine_kwargs: the engine settings, passed through
            `VLLMGenerator` so a policy generator with the same settings shares the engine.
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike, *, mode: str = "one_pass", settings=None,
                 system_prompt: str | None = AUTO, step_suffix: str | None = None,
                 max_model_len: int = 8192, min_pixels: int | None = None, max_pixels: int | None = None,
                 **engine_kwargs):
        from vlprm.backends.vllm_backend import VLLMGenerator

        self.model_path = os.fspath(model)
        self.mode = _check_mode(mode)
        self.settings = scorer_settings(self.model_path, settings, system_prompt=system_prompt,
                                        step_suffix=step_suffix, min_pixels=min_pixels, max_pixels=max_pixels)
        gen = VLLMGenerator(self.model_path, max_model_len=max_model_len, min_pixels=self.settings.min_pixels,
                            max_pixels=self.settings.max_pixels, **engine_kwargs)
        self.llm = gen.llm
        self.max_model_len = max_model_len
        # The HF processor renders the conversation exactly as HFScorer does (same chat template).
        self.processor = load_prm_processor(self.model_path, self.settings.min_pixels, self.settings.max_pixels)
        self.tokens = LabelTokens.for_settings(self.processor.tokenizer, self.settings)

    def _prompts(self, sample: PRMSample) -> list[str]:
        """Prompt k = the conversation cut right after step k's assistant header."""
        text = render_text(self.processor, sample, settings=self.settings)
        cuts, at = [], text.find(ASSISTANT_HEADER)
        while at >= 0:
            cuts.append(at + len(ASSISTANT_HEADER))
            at = text.find(ASSISTANT_HEADER, at + 1)
        if len(cuts) != len(sample.steps):
            raise ValueError(f"PRM sample {sample.id!r}: {len(cuts)} assistant turns rendered for "
                             f"{len(sample.steps)} steps; the chat template does not render ChatML turns")
        return [text[:c] for c in cuts]

    def _generate(self, requests: list[dict]):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                logprob_token_ids=[self.tokens.plus_id, self.tokens.minus_id])
        return self.llm.generate(requests, params, use_tqdm=False)

    def _read(self, sample: PRMSample, outs) -> StepScores:
        header = self.tokens.header_ids
        p_plus = []
        for o in outs:
            if list(o.prompt_token_ids[-len(header):]) != header:
                raise ValueError(f"PRM sample {sample.id!r}: a step prompt does not end with the "
                                 "assistant header after tokenization")
            lp = o.outputs[0].logprobs[0]
            if self.tokens.plus_id not in lp or self.tokens.minus_id not in lp:
                raise RuntimeError("vLLM returned no logprobs for the '+'/'-' label tokens "
                                   "(logprob_token_ids unsupported by this engine build)")
            a, b = lp[self.tokens.plus_id].logprob, lp[self.tokens.minus_id].logprob
            p_plus.append(1.0 / (1.0 + math.exp(b - a)))
        # num_tokens: the conversation up to the last label, as for HFScorer one pass (the
        # backend-independent measure); computed_tokens: what the engine ran after cache hits.
        computed = sum(len(o.prompt_token_ids) - (o.num_cached_tokens or 0) for o in outs)
        return StepScores(p_plus=p_plus, num_tokens=max(len(o.prompt_token_ids) for o in outs),
                          id=sample.id, mode=self.mode,
                          extra={"computed_tokens": computed,
                                 "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs)})

    def score(self, samples: Sequence[PRMSample], *, progress: bool = False) -> list[StepScores]:
        """Score every sample; results are in sample order, failures carry `error`."""
        from vlprm.backends.base import load_image

        results: list[StepScores | None] = [None] * len(samples)
        requests: list[dict] = []
        owner: list[tuple[int, int]] = []  # (sample index, step index) per request
        for i, s in enumerate(samples):
            try:
                sample = outcome_sample(s) if self.mode == "outcome" else unlabelled(s)
                images = [load_image(p) for p in sample.images]
                prompts = self._prompts(sample)
            except (ValueError, OSError) as e:
                results[i] = StepScores(p_plus=None, error=_error(e), id=s.id, mode=self.mode)
                continue
            # Longest prompt first: it fills the prefix cache the shorter ones then read.
            order = [len(prompts) - 1] + list(range(len(prompts) - 1))
            for k in order:
                req: dict = {"prompt": prompts[k]}
                if images:
                    req["multi_modal_data"] = {"image": images}
                requests.append(req)
                owner.append((i, k))
        by_sample: dict[int, list] = {}
        try:
            outs = self._generate(requests) if requests else []
        except Exception:  # noqa: BLE001 - one bad request fails vLLM's whole batch: isolate it
            outs = None
        if outs is not None:
            for (i, k), o in zip(owner, outs):
                by_sample.setdefault(i, {})[k] = o
        else:
            for i in dict.fromkeys(i for i, _ in owner):
                mine = [(k, r) for (j, k), r in zip(owner, requests) if j == i]
                try:
                    got = self._generate([r for _, r in mine])
                except Exception as e:  # noqa: BLE001 - reported per sample
                    results[i] = StepScores(p_plus=None, error=_error(e), id=samples[i].id, mode=self.mode)
                    continue
                by_sample[i] = {k: o for (k, _), o in zip(mine, got)}
        for i, outs_i in by_sample.items():
            try:
                results[i] = self._read(samples[i], [outs_i[k] for k in sorted(outs_i)])
            except (ValueError, RuntimeError) as e:
                results[i] = StepScores(p_plus=None, error=_error(e), id=samples[i].id, mode=self.mode)
        return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- factory + CLI

SCORER_BACKENDS = ("hf", "vllm")


def make_scorer(backend: str, model: str | os.PathLike, **kwargs) -> HFScorer | VLLMScorer:
    """A PRM scorer: backend "hf" (transformers, default) or "vllm"; kwargs go to its constructor
    (settings, system_prompt, step_suffix, min/max_pixels: the PRM's recorded settings by default;
    a PRM without a record and without explicit settings raises ConfigError)."""
    if backend == "hf":
        return HFScorer(model, **kwargs)
    if backend == "vllm":
        return VLLMScorer(model, **kwargs)
    raise ValueError(f"unknown scorer backend {backend!r}; choose one of {', '.join(SCORER_BACKENDS)}")


def _read_samples(path: Path) -> tuple[list[PRMSample], list[tuple[int, str]]]:
    """PRM samples from a JSONL of `PRMSample.to_dict()` rows; images relative to the file."""
    samples, bad = [], []
    base = path.parent
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                d["images"] = [p if os.path.isabs(p) else str(base / p) for p in d.get("images") or []]
                s = PRMSample.from_dict(d)
                s.id = s.id if s.id is not None else f"line{n}"
                samples.append(s)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                bad.append((n, _error(e)))
    return samples, bad


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score PRM samples (JSONL of question/steps/images) step by step.")
    p.add_argument("--prm", required=True, help="PRM directory or hub id")
    p.add_argument("--input", required=True, type=Path, help="JSONL, one PRMSample dict per line")
    p.add_argument("--out", required=True, type=Path, help="output JSONL: one StepScores dict per line")
    p.add_argument("--backend", default="hf", choices=SCORER_BACKENDS)
    p.add_argument("--mode", default="one_pass", choices=MODES)
    p.add_argument("--settings", default=None, help="a PRM settings record (.json) to use instead of the PRM's own "
                                                     "vlprm_prm.json")
    p.add_argument("--system-prompt", default=AUTO, help="'auto' (the PRM's record), a variant name, 'file:PATH' "
                                                         "or the text")
    p.add_argument("--step-suffix", default=None, help="text appended to every step ('' or '\\n\\n'); default: "
                                                       "the PRM's record")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--min-pixels", type=int, default=None, help="default: the PRM's record")
    p.add_argument("--max-pixels", type=int, default=None, help="default: the PRM's record")
    p.add_argument("--aggregations", default="mean,min,last,product",
                   help="comma-separated aggregations to add to each row (see vlprm.prm.aggregate)")
    args = p.parse_args(argv)

    from vlprm.prm.aggregate import aggregate

    t0 = time.time()
    try:  # refused before any model or data is loaded
        settings = resolve_prm_settings(args.prm, {
            "settings": args.settings, "system_prompt": args.system_prompt, "step_suffix": args.step_suffix,
            "min_pixels": args.min_pixels, "max_pixels": args.max_pixels},
            flag=lambda k: "--" + k.replace("_", "-"))
    except ConfigError as e:
        print(f"vlprm score: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    samples, bad = _read_samples(args.input)
    for n, why in bad:
        print(f"{args.input}:{n}: skipped: {why}", file=sys.stderr)
    kw: dict[str, Any] = dict(mode=args.mode, settings=settings)
    if args.backend == "hf":
        kw.update(batch_size=args.batch_size, max_length=args.max_length)
    scorer = make_scorer(args.backend, args.prm, **kw)
    scores = scorer.score(samples, progress=True)
    methods = [m for m in args.aggregations.split(",") if m]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with args.out.open("w", encoding="utf-8") as f:
        for s in scores:
            row = s.to_dict()
            row["scores"] = {m: aggregate(s, m) for m in methods} if s.ok else None
            failed += not s.ok
            if not s.ok:
                print(f"{args.input}: sample {s.id}: {s.error}", file=sys.stderr)
            f.write(json.dumps(row) + "\n")
    tokens = sum(s.num_tokens for s in scores)
    print(f"scored {len(scores) - failed}/{len(scores)} samples ({failed} failed, {len(bad)} unreadable lines), "
          f"{tokens} PRM tokens, {time.time() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
