"""Interchangeable generation backends: vllm (offline engine), openai (HTTP), hf (transformers).

Code above this package only sees `Generator.generate(requests, sampling)`.
"""

from vlprm.backends.base import (
    ChatRequest, Completion, GenerationResult, Generator, ImageLoadError, SamplingConfig, load_image,
)

BACKENDS = ("vllm", "openai", "hf")


def make_generator(backend: str, model: str, **kwargs) -> Generator:
    """Create a generator. kwargs go to the backend's constructor (unknown ones are ignored by
    the HTTP and hf backends; vllm passes them to `vllm.LLM`)."""
    if backend == "vllm":
        from vlprm.backends.vllm_backend import VLLMGenerator

        return VLLMGenerator(model, **kwargs)
    if backend == "openai":
        from vlprm.backends.openai_backend import OpenAIGenerator

        return OpenAIGenerator(model, **kwargs)
    if backend == "hf":
        from vlprm.backends.hf_backend import HFGenerator

        return HFGenerator(model, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["ChatRequest", "Completion", "GenerationResult", "Generator", "ImageLoadError",
           "SamplingConfig", "load_image", "make_generator", "BACKENDS"]
