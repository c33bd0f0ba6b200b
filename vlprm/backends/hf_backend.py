"""transformers `generate` backend: for small runs and machines without vLLM."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from tqdm.auto import tqdm

from vlprm.backends.base import (
    ChatRequest, Completion, GenerationResult, Generator, ImageLoadError, SamplingConfig,
    image_parts, load_image, render_prompt, truncate_at_stop,
)


def load_vlm(model: str, *, dtype: str = "auto", device: str | None = None,
             min_pixels: int | None = None, max_pixels: int | None = None,
             attn_implementation: str | None = None):
    """Load a Qwen2.5-VL-style model and its processor (image pixel bounds applied)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kw = {}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    mdl = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype, **kw).to(device).eval()
    proc_kw = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
    processor = AutoProcessor.from_pretrained(model, **proc_kw)
    if proc_kw:
        for k, v in proc_kw.items():
            setattr(processor.image_processor, k, v)
        processor.image_processor.size = {"shortest_edge": processor.image_processor.min_pixels,
                                          "longest_edge": processor.image_processor.max_pixels}
    return mdl, processor


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class HFGenerator(Generator):
    """Generation with transformers. One request at a time, its n samples in one batch."""

    name = "hf"

    def __init__(self, model: str, *, dtype: str = "auto", device: str | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None, **_ignored):
        self.model = model
        self.hf_model, self.processor = load_vlm(model, dtype=dtype, device=device,
                                                 min_pixels=min_pixels, max_pixels=max_pixels)
        self.tokenizer = self.processor.tokenizer

    def generate(self, requests: Sequence[ChatRequest], sampling: SamplingConfig, *,
                 progress: bool = True, desc: str | None = None) -> list[GenerationResult]:
        results = []
        for req in tqdm(requests, desc=desc or "hf generate", disable=not progress):
            try:
                results.append(self._one(req, sampling))
            except (ImageLoadError, ValueError) as e:
                results.append(GenerationResult(error=str(e), request_id=req.id))
            except Exception as e:  # noqa: BLE001 - e.g. CUDA out of memory: this request fails, the run goes on
                results.append(GenerationResult(error=f"{type(e).__name__}: {e}", request_id=req.id))
                _free_cuda_cache()
        return results

    def _one(self, req: ChatRequest, sampling: SamplingConfig) -> GenerationResult:
        import torch

        images = [load_image(x) for x in image_parts(req.messages)]
        text = render_prompt(self.processor, req.messages, req.continue_final_message)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        inputs = inputs.to(self.hf_model.device)
        seed = req.seed if req.seed is not None else sampling.seed
        if seed is not None:
            torch.manual_seed(seed)
        greedy = sampling.temperature <= 0
        # Greedy decoding gives one answer; transformers refuses n > 1 without sampling (vLLM
        # returns n identical completions): decode once and repeat it below.
        n_seq = 1 if greedy else sampling.n
        gen_kw = dict(
            max_new_tokens=sampling.max_tokens, do_sample=not greedy,
            num_return_sequences=n_seq, repetition_penalty=sampling.repetition_penalty,
            return_dict_in_generate=True, output_scores=sampling.logprobs is not None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if not greedy:
            gen_kw.update(temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else 0)
        if sampling.stop:
            gen_kw.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.hf_model.generate(**inputs, **gen_kw)
        n_prompt = inputs["input_ids"].shape[1]
        seqs = out.sequences[:, n_prompt:]
        trans = None
        if sampling.logprobs is not None:
            trans = self.hf_model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos = set(self.hf_model.generation_config.eos_token_id or [])
        if isinstance(self.hf_model.generation_config.eos_token_id, int):
            eos = {self.hf_model.generation_config.eos_token_id}
        pad = self.tokenizer.pad_token_id
        completions = []
        for row in range(seqs.shape[0]):
            ids = seqs[row].tolist()
            # Cut at the first end-of-turn; trailing pads belong to shorter siblings.
            end = next((j for j, t in enumerate(ids) if t in eos), None)
            finish = "stop" if end is not None else "length"
            ids = ids[:end] if end is not None else [t for t in ids if t != pad or pad in eos]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            full = text
            text, stopped = truncate_at_stop(text, sampling.stop)
            finish = "stop" if stopped else finish
            stop_reason = None
            if stopped:  # which stop string ended it (vLLM's stop_reason); None = end of sequence
                stop_reason = next((s for s in sampling.stop if full.startswith(s, len(text))), None)
            comp = Completion(text=text, finish_reason=finish, num_tokens=len(ids), stop_reason=stop_reason)
            if trans is not None:
                comp.logprobs = trans[row, : len(ids)].tolist()
                comp.tokens = [self.tokenizer.decode([t]) for t in ids]
            completions.append(comp)
        if greedy and sampling.n > 1:
            completions = [completions[0]] + [dataclasses.replace(completions[0]) for _ in range(sampling.n - 1)]
        return GenerationResult(completions=completions, prompt_tokens=n_prompt, request_id=req.id)
