"""Interchangeable generation backends: vllm (offline engine), openai (HTTP), hf (transformers).

Code above this package only sees `Generator.generate(requests, sampling)`.
"""

from vlprm.backends.base import (
    ChatRequest, Completion, GenerationResult, Generator, ImageLoadError, SamplingConfig, load_image,
)

BACKENDS = ("vllm", "openai", "hf")


def _generator_class(backend: str) -> type:
    if backend == "vllm":
        from vlprm.backends.vllm_backend import VLLMGenerator

        return VLLMGenerator
    if backend == "openai":
        from vlprm.backends.openai_backend import OpenAIGenerator

        return OpenAIGenerator
    if backend == "hf":
        from vlprm.backends.hf_backend import HFGenerator

        return HFGenerator
    from vlprm.config import ConfigError

    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _named_params(cls: type) -> list[str]:
    import inspect

    return [n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "model") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _vllm_engine_args() -> list[str]:
    """The fields of vllm's EngineArgs (what VLLMGenerator passes on to `vllm.LLM`); [] without vLLM."""
    try:
        import dataclasses

        from vllm.engine.arg_utils import EngineArgs

        return [f.name for f in dataclasses.fields(EngineArgs)]
    except Exception:  # noqa: BLE001 - vLLM not installed (e.g. a GPU box without it): no check
        return []


def check_backend_kwargs(backend: str, kwargs: dict, where: str = "backend_kwargs") -> None:
    """Refuse a setting the backend does not take, one line naming the key (under `where`, e.g.
    "judge.backend_kwargs") and the valid keys; then check the values the backend bounds (the
    openai backend's timeout, max_retries, deadline, ...)."""
    import difflib

    from vlprm.config import ConfigError

    cls = _generator_class(backend)
    valid = _named_params(cls)
    unknown = [k for k in kwargs if k not in valid]
    if unknown and backend == "vllm":
        engine = _vllm_engine_args()
        unknown = [k for k in unknown if k not in engine] if engine else []
        valid_text = ", ".join(valid) + ", or any vllm EngineArgs field"
        valid = valid + engine
    else:
        valid_text = ", ".join(valid)
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), valid, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{where}.{k}: not a setting of the {backend} backend{hint}; valid keys: {valid_text}")
    check = getattr(cls, "check_settings", None)
    if callable(check):
        check(kwargs, where)


def make_generator(backend: str, model: str, **kwargs) -> Generator:
    """Create a generator. kwargs go to the backend's constructor (vllm passes the ones it does
    not name to `vllm.LLM`); a key the backend does not take is a ConfigError (see
    `check_backend_kwargs`)."""
    check_backend_kwargs(backend, kwargs)
    return _generator_class(backend)(model, **kwargs)


def backend_kwargs(section, seed: int | None = None) -> dict:
    """The constructor arguments a config section (policy, judge, ...) gives its backend: the
    section's typed keys that apply to its backend, then its `backend_kwargs` (which win)."""
    kw: dict = {}
    if section.backend == "vllm":
        for k in ("max_model_len", "gpu_memory_utilization"):
            if getattr(section, k, None) is not None:
                kw[k] = getattr(section, k)
        if seed is not None:
            kw["seed"] = seed
    elif section.backend == "openai":
        kw["base_url"] = getattr(section, "base_url", None)
        kw["api_key_env"] = getattr(section, "api_key_env", "OPENAI_API_KEY")
    kw.update(getattr(section, "backend_kwargs", None) or {})
    return kw


def check_model(section, key: str) -> None:
    """A local backend's model must be a model directory or a plausible hub id (one line naming
    `key`, before any engine starts); an OpenAI-compatible server names its own models."""
    if section.backend in ("vllm", "hf"):
        from vlprm.paths import check_model_ref

        check_model_ref(section.model, key)


def check_section(section, name: str, seed: int | None = None) -> None:
    """Refuse a config section (`name`: "policy", "judge", ...) whose model or backend settings
    cannot work, one line naming the key ("judge.backend_kwargs.timeout: ..."), before any work."""
    check_model(section, f"{name}.model")
    check_backend_kwargs(section.backend, backend_kwargs(section, seed), f"{name}.backend_kwargs")


def generator_for(section, seed: int | None = None, key: str = "policy.model") -> Generator:
    """The one place a config section ({backend, model, ...}) becomes a generator."""
    check_section(section, key.rsplit(".", 1)[0], seed)
    return make_generator(section.backend, section.model, **backend_kwargs(section, seed))


__all__ = ["ChatRequest", "Completion", "GenerationResult", "Generator", "ImageLoadError",
           "SamplingConfig", "load_image", "make_generator", "check_backend_kwargs", "backend_kwargs", "check_model",
           "check_section", "generator_for",
           "BACKENDS"]
