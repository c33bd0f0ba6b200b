"""OpenAI-compatible HTTP backend: vLLM's own server or a hosted API.

Images travel as data URLs. Requests run concurrently up to a limit; 429, 5xx, connection
errors and timeouts are retried with exponential backoff and jitter; other 4xx fail at once
with the server's message. Time is bounded: each HTTP attempt by `timeout`, all attempts and
backoff of one request together by `deadline`, so a hanging server fails a request in minutes,
not hours (`SETTING_BOUNDS` says what a config may ask for). The API key comes from an
environment variable and is masked (`vlprm.secrets.redact`) in every error the backend returns,
even when a server echoes it back.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from tqdm.auto import tqdm

from vlprm.backends.base import (
    ChatRequest, Completion, GenerationResult, Generator, ImageLoadError, SamplingConfig,
    has_transparency, open_image, to_rgb,
)
from vlprm.secrets import redact, secret_from_env

# (low, high) for the numeric settings: a run waits at most about deadline per request.
SETTING_BOUNDS: dict[str, tuple[float, float]] = {
    "timeout": (0.1, 1800.0), "deadline": (0.1, 7200.0), "max_retries": (0, 10),
    "max_concurrency": (1, 1024), "backoff_base": (0.0, 600.0), "backoff_max": (0.0, 600.0),
    "max_n_per_request": (1, 1024),
}
_INT_SETTINGS = ("max_retries", "max_concurrency", "max_n_per_request")


def image_to_data_url(image: Any) -> str:
    """Encode an image (path, bytes, PIL, data URL) as a data URL carrying exactly the pixels
    `load_image` gives every other path: an opaque RGB/greyscale PNG/JPEG/WebP file keeps its
    bytes; anything else (transparency, palette, CMYK, ...) is sent as a PNG of `to_rgb`."""
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return image
    raw = open_image(image)  # fail here, with the path, rather than at the server
    if isinstance(image, (str, os.PathLike)) and raw.mode in ("RGB", "L") and not has_transparency(raw):
        path = os.fspath(image)
        if path.startswith("data:"):
            return path
        path = path[len("file://"):] if path.startswith("file://") else path
        mime = mimetypes.guess_type(path)[0]
        if mime in ("image/png", "image/jpeg", "image/webp"):
            with open(path, "rb") as f:
                return f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"
    buf = io.BytesIO()
    to_rgb(raw).save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"


def to_openai_messages(messages: Sequence[dict]) -> list[dict]:
    """HF multimodal messages -> OpenAI chat messages (images as image_url data URLs)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                if p.get("type") in ("image", "image_url") or "image" in p:
                    ref = p.get("image", p.get("image_url"))
                    if isinstance(ref, dict):  # already {"url": ...}
                        ref = ref.get("url")
                    parts.append({"type": "image_url", "image_url": {"url": image_to_data_url(ref)}})
                else:
                    parts.append({"type": "text", "text": p.get("text", "")})
            # Assistant turns must be plain text for most servers.
            if m["role"] == "assistant" and all(x["type"] == "text" for x in parts):
                out.append({"role": "assistant", "content": "".join(x["text"] for x in parts)})
            else:
                out.append({"role": m["role"], "content": parts})
        else:
            out.append({"role": m["role"], "content": content})
    return out


class OpenAIGenerator(Generator):
    """Chat completions against any OpenAI-compatible endpoint.

    Args:
        model: the served model name.
        base_url: e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL or OpenAI's).
        api_key_env: environment variable holding the key ("EMPTY" if unset, as vLLM accepts).
        max_concurrency: requests in flight at once.
        max_retries: retries after the first try on 429/5xx/connection errors/timeouts.
        timeout: seconds per HTTP attempt (no reply within it: a timeout, retried).
        deadline: seconds for one request in all, attempts and backoff included (None: no
            limit beyond (max_retries + 1) x timeout plus backoff).
        backoff_base / backoff_max: exponential backoff bounds, seconds.
        vllm_extensions: send vLLM-only fields (top_k, repetition_penalty, continuation flags).
        max_n_per_request: split n into several requests for servers that cap or reject n>1.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 16, max_retries: int = 2, timeout: float = 90.0,
                 deadline: float | None = 300.0, backoff_base: float = 1.0, backoff_max: float = 30.0,
                 vllm_extensions: bool = True, max_n_per_request: int | None = None):
        import openai

        self.check_settings(dict(max_concurrency=max_concurrency, max_retries=max_retries, timeout=timeout,
                                 deadline=deadline, backoff_base=backoff_base, backoff_max=backoff_max,
                                 max_n_per_request=max_n_per_request), "openai backend")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.deadline = deadline
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.vllm_extensions = vllm_extensions
        self.max_n_per_request = max_n_per_request
        # Our own retry loop (below) decides what is retried; the client's is off.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=secret_from_env(api_key_env) or "EMPTY",
                                    max_retries=0, timeout=timeout)

    @staticmethod
    def check_settings(settings: dict, where: str = "openai backend") -> None:
        """Refuse a timeout / retry / concurrency setting outside `SETTING_BOUNDS` (ConfigError)."""
        from vlprm.config import ConfigError

        for key, (low, high) in SETTING_BOUNDS.items():
            v = settings.get(key)
            if v is None:
                continue
            kind = "an integer" if key in _INT_SETTINGS else "a number of seconds"
            ok_type = isinstance(v, int) if key in _INT_SETTINGS else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok_type:
                raise ConfigError(f"{where}.{key}: expected {kind}, got {v!r}")
            if not low <= v <= high:
                raise ConfigError(f"{where}.{key}: {v!r} is out of range; use {low:g} to {high:g}")

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIGenerator(model={self.model!r}, base_url={self.base_url!r}, key from ${self.api_key_env})"

    def close(self) -> None:
        self.client.close()

    def generate(self, requests: Sequence[ChatRequest], sampling: SamplingConfig, *,
                 progress: bool = True, desc: str | None = None) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=max(1, self.max_concurrency)) as pool, \
                tqdm(total=len(requests), desc=desc or f"{self.model} (http)", disable=not progress) as bar:
            futures = {pool.submit(self._one, req, sampling): i for i, req in enumerate(requests)}
            for fut in futures:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. a malformed reply: this request fails, not the batch
                    results[i] = GenerationResult(error=redact(f"{type(e).__name__}: {_short(e)}"),
                                                  request_id=requests[i].id)
                bar.update(1)
        return results  # type: ignore[return-value]

    def request_body(self, req: ChatRequest, sampling: SamplingConfig, n: int) -> dict:
        """The JSON body of a /chat/completions call (also used by the batch-file writer)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(req.messages),
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        seed = req.seed if req.seed is not None else sampling.seed
        if seed is not None:
            body["seed"] = seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.logprobs is not None:
            body["logprobs"] = True
            if sampling.logprobs > 0:
                body["top_logprobs"] = sampling.logprobs
        if self.vllm_extensions:
            if sampling.top_k and sampling.top_k > 0:
                body["top_k"] = sampling.top_k
            if sampling.repetition_penalty != 1.0:
                body["repetition_penalty"] = sampling.repetition_penalty
            if req.continue_final_message:
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        elif req.continue_final_message:
            raise ValueError("continuing a partial assistant message needs a vLLM server "
                             "(vllm_extensions=True); hosted APIs do not support it")
        return body

    def _one(self, req: ChatRequest, sampling: SamplingConfig) -> GenerationResult:
        chunk = self.max_n_per_request or sampling.n
        completions: list[Completion] = []
        prompt_tokens = None
        remaining = sampling.n
        part = 0
        while remaining > 0:
            n = min(chunk, remaining)
            try:
                body = self.request_body(req, sampling, n)
            except (ImageLoadError, ValueError) as e:
                return GenerationResult(error=str(e), request_id=req.id)
            if part and "seed" in body:  # distinct samples for each split request
                body["seed"] = body["seed"] + part
            resp, err = self._post(body)
            if err:
                return GenerationResult(completions=completions, error=err, request_id=req.id)
            prompt_tokens = getattr(resp.usage, "prompt_tokens", None) if resp.usage else None
            new = [_completion(c) for c in resp.choices]
            if resp.usage and new and all(c.num_tokens == 0 for c in new):
                # Without logprobs only the total is known: share it out.
                for c in new:
                    c.num_tokens = (resp.usage.completion_tokens or 0) // len(new)
            completions.extend(new)
            remaining -= n
            part += 1
        return GenerationResult(completions=completions, prompt_tokens=prompt_tokens, request_id=req.id)

    def _post(self, body: dict):
        """POST with retries within the deadline. Returns (response, None) or (None, error
        message); the message never holds the API key."""
        import openai

        extra = {k: body.pop(k) for k in ("top_k", "repetition_penalty", "continue_final_message",
                                          "add_generation_prompt") if k in body}
        where = self.base_url or "the default OpenAI endpoint"
        start = time.monotonic()
        last, attempts = "", 0
        for attempt in range(self.max_retries + 1):
            left = self._time_left(start)
            if left is not None and left <= 0:
                break
            attempts += 1
            timeout = self.timeout if left is None else min(self.timeout, left)
            try:
                return self.client.chat.completions.create(**body, extra_body=extra or None, timeout=timeout), None
            except openai.APITimeoutError:
                last = "no reply (timed out)"
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                last = f"{type(e).__name__}: {_short(e)}"
            except openai.APIStatusError as e:  # other 4xx: the request itself is wrong
                return None, redact(f"HTTP {e.status_code} from {where}: {_short(e)} (not retried)")
            if attempt < self.max_retries:
                delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * (0.5 + random.random() / 2)
                left = self._time_left(start)
                time.sleep(delay if left is None else max(0.0, min(delay, left)))
        spent = time.monotonic() - start
        limit = f"; deadline {self.deadline:g} s" if self.deadline is not None else ""
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return None, redact(f"{last} from {where} after {tries} in {spent:.1f} s "
                            f"(timeout {self.timeout:g} s per attempt, max_retries {self.max_retries}{limit})")

    def _time_left(self, start: float) -> float | None:
        return None if self.deadline is None else self.deadline - (time.monotonic() - start)


def _short(e: Exception, limit: int = 300) -> str:
    s = str(e).replace("\n", " ")
    return s if len(s) <= limit else s[:limit] + "..."


def _completion(choice) -> Completion:
    logprobs = tokens = top = None
    lp = getattr(choice, "logprobs", None)
    if lp is not None and lp.content:
        logprobs = [t.logprob for t in lp.content]
        tokens = [t.token for t in lp.content]
        top = [{a.token: a.logprob for a in (t.top_logprobs or [])} for t in lp.content]
    text = choice.message.content or ""
    n_tok = len(tokens) if tokens is not None else 0
    # vLLM's server adds stop_reason to each choice; other servers leave it out (None).
    return Completion(text=text, finish_reason=choice.finish_reason, num_tokens=n_tok,
                      logprobs=logprobs, tokens=tokens, top_logprobs=top,
                      stop_reason=getattr(choice, "stop_reason", None))
