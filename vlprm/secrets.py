"""Keep API keys off disks and out of logs.

The rule: a key lives only in an environment variable. A config names the variable
(`api_key_env: OPENAI_API_KEY`); a key written inline in a config (`api_key: sk-...`) is refused
when the config is loaded (`inline_secret_keys`), so a saved config can only ever hold the
variable's name. Every key a backend reads is registered here (`secret_from_env`), and text that
may carry it (recorded errors, log lines, summaries, saved configs) goes through `redact`, which
also masks bearer tokens and `sk-...` style keys it was never told about (a proxy that echoes
another key). Entry points call `install_log_redaction()` once after configuring logging.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

MASK = "***"
# Values shorter than this are not keys (e.g. vLLM's "EMPTY"): masking them would mangle text.
_MIN_SECRET_LEN = 8
# A bearer token, an Authorization header value, and the common key shapes (OpenAI sk-..., HF
# hf_...). A token has 16+ characters with a digit among them, so prose ("bearer bonds") stays.
_TOKEN = r"(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{16,}"
_PATTERNS = (
    re.compile(r"(Bearer\s+)" + _TOKEN),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\s)" + _TOKEN),
    re.compile(r"()\b(?:sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,})"),
)
# Config keys whose value would be a secret itself (as opposed to `api_key_env`, which names one).
_SECRET_KEY_RE = re.compile(r"(?i)^(api_?key|.*_api_key|access_token|auth_token|token|secret|password"
                            r"|authorization|bearer)$")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what an environment variable's name looks like

_lock = threading.Lock()
_secrets: set[str] = set()
# Tokens the libraries a run uses read from the environment by these names.
WELL_KNOWN_ENV = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")


def register_secret(value: str | None) -> None:
    """Remember a secret value so that `redact` masks it wherever it shows up."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def secret_from_env(env_name: str) -> str | None:
    """The value of the environment variable `env_name` (None when unset), registered as a secret."""
    value = os.environ.get(env_name) or None
    register_secret(value)
    return value


def register_env_secrets(data: Any) -> None:
    """Register the value of every environment variable a config names in an `*_env` field
    (api_key_env: OPENAI_API_KEY), so it is masked even where no backend has read it yet."""
    if isinstance(data, dict):
        for k, v in data.items():
            if str(k).endswith("_env") and isinstance(v, str) and _ENV_NAME.fullmatch(v):
                secret_from_env(v)
            else:
                register_env_secrets(v)
    elif isinstance(data, (list, tuple)):
        for v in data:
            register_env_secrets(v)


def redact(text: str) -> str:
    """`text` with every registered secret, bearer token and key-shaped string replaced by ***."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for s in known:
        if s in text:
            text = text.replace(s, MASK)
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def is_secret_key(name: str) -> bool:
    """Whether a config key would hold a secret value (api_key, token, ...; not api_key_env)."""
    return bool(_SECRET_KEY_RE.match(str(name)))


def _key_in_env_field(name: str, value: Any) -> bool:
    """An `*_env` field (which names a variable) given the key itself, e.g. api_key_env: sk-..."""
    return str(name).endswith("_env") and isinstance(value, str) and bool(value) and (
        not _ENV_NAME.fullmatch(value) or bool(_PATTERNS[2].fullmatch(value)))



def inline_secret_keys(data: Any, where: str = "") -> list[str]:
    """Dotted names of the keys in a config mapping that hold a secret written inline (a secret
    key with a value, or an `*_env` key given something other than a variable name)."""
    found: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            name = f"{where}{k}"
            if (is_secret_key(k) and isinstance(v, str) and v.strip()) or _key_in_env_field(k, v):
                found.append(name)
            else:
                found += inline_secret_keys(v, name + ".")
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found += inline_secret_keys(v, f"{where[:-1] if where.endswith('.') else where}[{i}].")
    return found


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message (and its traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


for _name in WELL_KNOWN_ENV:
    secret_from_env(_name)


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches the handlers of `logger` (default: the root logger).

    Handler filters see records propagated from every child logger (logger filters would not);
    call it after the handlers are set up (logging.basicConfig)."""
    logger = logger or logging.getLogger()
    if logging.lastResort is not None and _FILTER not in logging.lastResort.filters:
        logging.lastResort.addFilter(_FILTER)  # prints warnings while no handler is configured
    for h in logger.handlers:
        if _FILTER not in h.filters:
            h.addFilter(_FILTER)
