"""Checks of the paths a run is given, made before any engine starts or any sampling happens.

Each raises `ConfigError` with one line naming the config key, the path and what is wrong, so
an entry point can print it and exit 2 at once instead of failing minutes later.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from vlprm.config import ConfigError

# A hub id: "org/name" (letters, digits, "-", "_", "."), not starting with "." or "/".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# Below this much free space an output directory is refused at start (a run writes far more).
MIN_FREE_BYTES = 16 * 2**20


def is_hub_id(value: str) -> bool:
    """Whether `value` is shaped like a model hub id ("org/name")."""
    return bool(_HUB_ID.fullmatch(value)) and ".." not in value


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - no hub library or a malformed id: not cached
        return False


def check_model_ref(value: str, key: str) -> str:
    """Accept a model given as an existing local path or a plausible hub id ("org/name");
    refuse anything else with one line naming `key` (e.g. "prm.model"). With the hub offline
    (HF_HUB_OFFLINE=1) a hub id must be in the local hub cache. Returns `value`."""
    value = os.fspath(value)
    if not value.strip():
        raise ConfigError(f"{key}: empty model path; give a local model directory or a hub id like 'org/name'")
    path = Path(value).expanduser()
    if path.exists():
        if path.is_dir() and not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ConfigError(f"{key}: {value} is a directory without config.json, so not a model directory")
        return value
    if not is_hub_id(value):
        raise ConfigError(f"{key}: model {value!r} not found: no such local path, and not a hub id like "
                          "'org/name'")
    if _hub_offline() and not _in_hub_cache(value):
        raise ConfigError(f"{key}: model {value!r} is not a local path, and the hub is offline (HF_HUB_OFFLINE) "
                          "with no cached copy; give the local model directory")
    return value


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike, key: str = "out", *, min_free: int = MIN_FREE_BYTES) -> Path:
    """Refuse an output directory that is a file, cannot be written, or sits on a (nearly) full
    disk, with one line naming `key`, the path and why. Creates nothing. Returns the path."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file, not a directory; choose another output directory")
    base = _first_existing(path)
    if not base.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {base} is a file, not a directory")
    try:  # the real test: os.access says yes to root on a read-only mount
        with tempfile.TemporaryFile(dir=base, prefix=".vlprm-write-check") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        why = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
            (e.strerror or str(e)).lower()
        raise ConfigError(f"{key}: cannot write to {path} ({why} in {base}); choose another output directory") \
            from None
    free = shutil.disk_usage(base).free
    if free < min_free:
        raise ConfigError(f"{key}: no space left for {path}: {free // 2**20} MiB free on its disk "
                          f"(at least {min_free // 2**20} MiB needed); free space or choose another directory")
    return path
