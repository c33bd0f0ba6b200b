"""Shared fixtures: the embedded tiny model is built once per cache dir and reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("VLPRM_CACHE", REPO / ".cache"))
os.environ["VLPRM_CACHE"] = str(CACHE)  # loaders' image caches too: inside the repo's .cache, not ~/.cache

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Path to the embedded tiny Qwen2.5-VL (built on first use, then cached)."""
    from vlprm.models.tiny import ensure_tiny_model

    return Path(ensure_tiny_model(CACHE / "tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """vLLM's OpenAI-compatible server serving the tiny model as "tiny" on 127.0.0.1."""
    from vlprm.backends.server import VLLMServer

    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with VLLMServer(str(tiny_model_dir), served_model_name="tiny", max_model_len=4096,
                    log_path=log) as server:
        yield server


@pytest.fixture(scope="session")
def sample_image(tmp_path_factory) -> Path:
    """A small PNG with a few coloured shapes."""
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("img") / "shapes.png"
    img = Image.new("RGB", (160, 120), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((10, 10, 60, 60), fill="red")
    d.rectangle((80, 20, 140, 80), fill="blue")
    img.save(path)
    return path
