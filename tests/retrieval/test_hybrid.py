"""Hybrid search with the real embedder: modes, fusion, ACL, and chunk -> document evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.settings import RetrievalSettings
from retrieval.dense import FaissIndex
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.evaluate import (
    build_memory_indexes,
    doc_hits,
    evaluate_searcher,
    evaluate_variants,
    gather_candidates,
    load_cmrc,
    standard_variants,
)
from retrieval.hybrid import HybridSearcher
from retrieval.lexical import BM25Index
from retrieval.types import SearchHit

pytestmark = pytest.mark.slow

DOCS = [
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "Error code E1234 means the backup job could not reach the storage server.",
    "Employees may work from home up to three days a week with manager approval.",
    "The cafeteria serves vegetarian lunch options every weekday.",
    "To reset your password, open the account page and choose 'forgot password'.",
    "Annual leave requests must be submitted two weeks in advance.",
]


@pytest.fixture(scope="module")
def parts() -> tuple[SentenceTransformerEmbedder, FaissIndex, BM25Index]:
    embedder = SentenceTransformerEmbedder()
    dense, lexical = build_memory_indexes(DOCS, embedder, "jieba")
    assert dense is not None
    return embedder, dense, lexical


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_modes_find_the_right_chunk(parts, mode: str, fusion: str) -> None:
    embedder, dense, lexical = parts
    searcher = HybridSearcher(embedder, dense, lexical, mode=mode, fusion=fusion, candidates=10)
    assert searcher.search("how many days can I work remotely from home", 3)[0].chunk_id == 2
    if mode != "dense":  # an exact code is what BM25 is for
        assert searcher.search("E1234", 1)[0].chunk_id == 1


def test_hybrid_hits_carry_both_scores_and_respect_allowed(parts) -> None:
    embedder, dense, lexical = parts
    settings = RetrievalSettings()
    searcher = HybridSearcher.from_settings(settings, embedder, dense, lexical)
    hits = searcher.search("password reset for my account", 4)
    assert isinstance(hits[0], SearchHit) and hits[0].chunk_id == 4
    assert all(h.dense_score is not None and h.bm25_score is not None for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for allowed in ({0, 3}, {5}, {3}):
        got = searcher.search("password reset for my account", 4, allowed=allowed)
        assert {h.chunk_id for h in got} <= allowed
        assert len(got) == len(allowed)
    assert searcher.search("password", 4, allowed=set()) == []


def test_doc_hits_take_best_chunk() -> None:
    hits = [SearchHit(10, 0.9), SearchHit(11, 0.95), SearchHit(12, 0.5), SearchHit(99, 1.0)]
    assert doc_hits(hits, {10: "a", 11: "a", 12: "b"}) == [("a", 0.95), ("b", 0.5)]


def test_evaluation_on_a_small_cmrc_style_file(parts, tmp_path: Path) -> None:
    embedder, _, _ = parts
    data = {
        "data": [
            {"paragraphs": [{"id": "P1", "context": "熊猫主要生活在四川的山区，以竹子为食。",
                             "qas": [{"id": "Q1", "question": "熊猫以什么为食？"}]}]},
            {"paragraphs": [{"id": "P2", "context": "长江是中国最长的河流，流经上海注入东海。",
                             "qas": [{"id": "Q2", "question": "中国最长的河流是哪条？"}]}]},
            {"paragraphs": [{"id": "P3", "context": "北京是中华人民共和国的首都。",
                             "qas": [{"id": "Q3", "question": "中华人民共和国的首都是哪里？"}]}]},
        ]
    }
    path = tmp_path / "cmrc.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    paragraphs, chunk_to_doc, queries, qrels = load_cmrc(path)
    assert chunk_to_doc == {0: "P1", 1: "P2", 2: "P3"} and qrels["Q2"] == {"P2": 1}
    dense, lexical = build_memory_indexes(paragraphs, embedder, "bigram")
    searcher = HybridSearcher(embedder, dense, lexical)
    cands = gather_candidates(searcher, queries, n=10)
    results = evaluate_variants(cands, qrels, chunk_to_doc, standard_variants((0.5,)), metrics=("recall@1",))
    assert results["bm25"]["recall@1"] == 1.0
    assert results["convex(a=0.5)"]["recall@1"] == 1.0
    single = evaluate_searcher(searcher, queries, qrels, chunk_to_doc, metrics=("recall@1", "mrr@10"))
    assert single["recall@1"] == 1.0 and single["mrr@10"] == 1.0
    assert np.isfinite(list(results["dense"].values())).all()
