"""Score solutions with a PRM: P(+) for every step, in the one PRM format (`vlprm.prm.format`).

Two backends behind one small protocol, `Scorer.score(samples) -> list[StepScores]`:

* `HFScorer` (transformers, the default). ``mode="one_pass"`` reads every step's P(+) from ONE
  forward pass over the conversation with "+" placeholders as labels (causal attention: a
  placeholder never influences its own or an earlier step's score). Samples are batched with
  right padding; image tensors are concatenated in sample order. ``mode="per_step"`` is the
  reference: one pass per step prefix (the conversation cut after step k), reading its last
  label; the tests check both agree. ``mode="outcome"`` scores the whole solution as one step
  (the PRM used as an outcome reward model).
* `VLLMScorer` (`vlprm.prm.vllm_scorer`: a `vllm.LLM` engine, shared per process via `get_engine`). vLLM's prompt
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
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from vlprm.config import ConfigError
from vlprm.prm.format import LabelTokens, PRMSample, encode_prm, load_images, load_prm_processor
from vlprm.prm.settings import AUTO, resolve_prm_settings
from vlprm.prm.step_scores import (  # noqa: F401 - re-exported: importers use vlprm.prm.scorer
    MODES, OUTCOME_JOINER, Scorer, StepScores, _check_mode, _error, build_prm_sample, outcome_sample,
    scorer_settings, unlabelled,
)
from vlprm.prm.vllm_scorer import VLLMScorer


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
