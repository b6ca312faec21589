"""The Embedder contract: what ingestion (embed_passages, token_spans), search (embed_query, dim) and
evaluation (embed_queries) rely on."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.types import Embedder

PASSAGES = [
    "A cat is sleeping on the sofa.",
    "Quarterly revenue grew by 8 percent compared with last year.",
    "客户可以在网上银行修改绑定的手机号码。",
    "The retention period for audit records is seven years. " * 10,  # long: real padding in a batch
]
QUERY = "where is the kitten napping?"  # closest to PASSAGES[0]
SPAN_TEXTS = [
    "Tokenization splits unbelievable words.",
    "  leading and trailing spaces, tabs\tand\nnew lines  ",
    "差旅住宿标准 is 500 元 per night.",
]


def _unit_rows(vecs: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vecs, axis=-1), 1.0, atol=1e-4))


class EmbedderContract:
    """Mixin: a concrete class defines ``make()``; one instance serves the whole class."""

    def make(self) -> Embedder:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls) -> Embedder:
        return cls().make()

    @pytest.fixture(scope="class")
    @classmethod
    def passages(cls, embedder: Embedder) -> np.ndarray:
        return embedder.embed_passages(PASSAGES)

    def test_is_an_embedder(self, embedder: Embedder) -> None:
        assert isinstance(embedder, Embedder)
        assert isinstance(embedder.model_name, str) and embedder.model_name
        assert isinstance(embedder.dim, int) and not isinstance(embedder.dim, bool) and embedder.dim > 0

    def test_passages_are_normalized_float32_rows_in_input_order(self, embedder: Embedder, passages) -> None:
        assert isinstance(passages, np.ndarray)
        assert passages.dtype == np.float32 and passages.shape == (len(PASSAGES), embedder.dim)
        assert passages.flags.c_contiguous  # FAISS and the sealed vector bytes need contiguous float32
        assert _unit_rows(passages)
        one_by_one = np.stack([embedder.embed_passages([p])[0] for p in PASSAGES])
        assert np.allclose(one_by_one, passages, atol=5e-3)  # batching and padding change nothing
        assert np.allclose(embedder.embed_passages(PASSAGES[::-1])[::-1], passages, atol=5e-3)

    def test_empty_batch(self, embedder: Embedder) -> None:
        for empty in (embedder.embed_passages([]), embedder.embed_queries([])):
            assert empty.dtype == np.float32 and empty.shape == (0, embedder.dim)

    def test_query_is_one_normalized_vector_and_finds_its_passage(self, embedder: Embedder, passages) -> None:
        q = embedder.embed_query(QUERY)
        assert isinstance(q, np.ndarray) and q.dtype == np.float32 and q.shape == (embedder.dim,)
        assert _unit_rows(q)
        sims = passages @ q
        assert int(np.argmax(sims)) == 0, sims
        assert sims[0] > sims[1] + 0.2, sims  # meaning, not noise: unrelated text scores clearly lower

    def test_queries_batch_equals_one_at_a_time(self, embedder: Embedder) -> None:
        texts = [QUERY, "annual revenue growth", "修改手机号码"]
        batch = embedder.embed_queries(texts)
        assert batch.dtype == np.float32 and batch.shape == (3, embedder.dim) and _unit_rows(batch)
        assert np.allclose(batch, np.stack([embedder.embed_query(t) for t in texts]), atol=5e-3)

    def test_same_input_same_vectors(self, embedder: Embedder, passages) -> None:
        assert np.allclose(embedder.embed_passages(PASSAGES), passages, atol=1e-6)  # no dropout, no sampling

    def test_count_tokens(self, embedder: Embedder) -> None:
        short, long = embedder.count_tokens("annual leave"), embedder.count_tokens("annual leave " * 20)
        assert isinstance(short, int) and 0 < short < long
        assert embedder.count_tokens("") == 0  # no special tokens counted
        assert embedder.count_tokens("Tokenization splits unbelievable words.") > 4  # word pieces, not words

    @pytest.mark.parametrize("text", SPAN_TEXTS)
    def test_token_spans_cover_the_text_in_order(self, embedder: Embedder, text: str) -> None:
        spans = embedder.token_spans(text)
        assert isinstance(spans, list) and len(spans) == embedder.count_tokens(text)
        assert all(type(a) is int and type(b) is int for a, b in spans)
        assert all(0 <= a < b <= len(text) for a, b in spans)
        starts = [a for a, _ in spans]
        assert starts == sorted(starts), "the chunker bisects on span starts"
        covered = set().union(*(range(a, b) for a, b in spans))
        assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered  # the chunker loses no text
        assert embedder.token_spans("") == []
