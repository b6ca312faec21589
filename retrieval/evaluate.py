"""Reusable retrieval evaluation: run queries through a searcher, map chunk hits to documents, score.

The lead's ``kb eval retrieval`` builds its searcher from the DB (chunks of documents); benchmarks
build one in memory with :func:`build_memory_indexes` (one passage per document). Chunk hits become
document hits by the best-scoring chunk of each document (max over chunks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.dense import FaissIndex
from retrieval.hybrid import Candidates, Fusion, HybridSearcher, Mode, fuse_candidates
from retrieval.lexical import BM25Index
from retrieval.metrics import evaluate
from retrieval.tokenize import CjkMode
from retrieval.types import Embedder, SearchHit

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10")


@dataclass(frozen=True)
class Variant:
    """One way to rank gathered candidates: a mode, and for hybrid a fusion and its parameter."""

    name: str
    mode: Mode
    fusion: Fusion = "convex"
    alpha: float = 0.5
    rrf_k: int = 60


def standard_variants(alphas: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7), rrf_k: int = 60) -> list[Variant]:
    out = [Variant("dense", "dense"), Variant("bm25", "bm25"), Variant(f"rrf(k={rrf_k})", "hybrid", "rrf", rrf_k=rrf_k)]
    out += [Variant(f"convex(a={a:g})", "hybrid", "convex", alpha=a) for a in alphas]
    return out


def doc_hits(hits: Iterable[SearchHit | tuple[int, float]], chunk_to_doc: Mapping[int, str]) -> list[tuple[str, float]]:
    """Chunk hits -> document hits, each document scored by its best chunk, best first."""
    best: dict[str, float] = {}
    for hit in hits:
        cid, score = (hit.chunk_id, hit.score) if isinstance(hit, SearchHit) else hit
        doc = chunk_to_doc.get(int(cid))
        if doc is not None and (doc not in best or score > best[doc]):
            best[doc] = float(score)
    return sorted(best.items(), key=lambda kv: -kv[1])


def embed_queries(embedder: Embedder, queries: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Embed all queries in batches (much faster than one by one)."""
    qids = list(queries)
    vecs = embedder.embed_queries([queries[q] for q in qids]) if qids else np.zeros((0, 0))
    return {q: vecs[i] for i, q in enumerate(qids)}


def gather_candidates(
    searcher: HybridSearcher, queries: Mapping[str, str], n: int = 100
) -> dict[str, Candidates]:
    """Dense and BM25 candidates for every query (with filled scores), computed once for all variants."""
    vecs = embed_queries(searcher.embedder, queries) if searcher.embedder is not None else {}
    return {qid: searcher.gather(text, None, vecs.get(qid), n=n) for qid, text in queries.items()}


def evaluate_variants(
    candidates: Mapping[str, Candidates],
    qrels: Mapping[str, Mapping[str, int]],
    chunk_to_doc: Mapping[int, str],
    variants: Sequence[Variant],
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 100,
) -> dict[str, dict[str, float]]:
    """{variant name: {metric: mean}} from candidates gathered once."""
    results = {}
    for v in variants:
        run = {
            qid: doc_hits(fuse_candidates(c, k, v.mode, v.fusion, v.alpha, v.rrf_k), chunk_to_doc)
            for qid, c in candidates.items()
        }
        results[v.name] = evaluate(run, qrels, metrics)
    return results


def evaluate_searcher(
    searcher: HybridSearcher,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    chunk_to_doc: Mapping[int, str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 100,
) -> dict[str, float]:
    """Metrics of one searcher as configured (for ``kb eval retrieval``)."""
    vecs = embed_queries(searcher.embedder, queries) if searcher.embedder is not None else {}
    run = {qid: doc_hits(searcher.search(q, k, query_vector=vecs.get(qid)), chunk_to_doc) for qid, q in queries.items()}
    return evaluate(run, qrels, metrics)


def build_memory_indexes(
    passages: Sequence[str],
    embedder: Embedder | None,
    tokenizer: CjkMode = "jieba",
    k1: float = 0.9,
    b: float = 0.4,
    vectors_cache: Path | None = None,
) -> tuple[FaissIndex | None, BM25Index]:
    """Exact FAISS + BM25 over passages with chunk ids 0..n-1; embeddings optionally cached as .npy."""
    ids = np.arange(len(passages), dtype=np.int64)
    lexical = BM25Index(k1=k1, b=b, tokenizer=tokenizer)
    lexical.add(ids.tolist(), passages)
    if embedder is None:
        return None, lexical
    vecs = None
    if vectors_cache is not None and vectors_cache.exists():
        vecs = np.load(vectors_cache, allow_pickle=False)
        if vecs.shape[0] != len(passages):
            vecs = None
    if vecs is None:
        vecs = embedder.embed_passages(list(passages))
        if vectors_cache is not None:
            vectors_cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(vectors_cache, vecs, allow_pickle=False)
    dense = FaissIndex(vecs.shape[1], kind="flat")
    dense.add(ids, vecs)
    return dense, lexical


# ---- data sets ----------------------------------------------------------------------------------


def beir_passages(corpus: Mapping[str, Mapping[str, str]]) -> tuple[list[str], dict[int, str]]:
    """One passage per BEIR document (title + text) and the chunk id -> doc id map."""
    doc_ids = list(corpus)
    texts = [f"{corpus[d]['title']}\n{corpus[d]['text']}".strip() for d in doc_ids]
    return texts, dict(enumerate(doc_ids))


def load_cmrc(path: str | Path) -> tuple[list[str], dict[int, str], dict[str, str], dict[str, dict[str, int]]]:
    """CMRC2018 (SQuAD format) as paragraph retrieval: (paragraphs, chunk id -> paragraph id, queries, qrels)."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    paragraphs: list[str] = []
    chunk_to_doc: dict[int, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for article in data:
        for para in article["paragraphs"]:
            pid = str(para.get("id") or f"p{len(paragraphs)}")
            chunk_to_doc[len(paragraphs)] = pid
            paragraphs.append(para["context"])
            for qa in para["qas"]:
                queries[str(qa["id"])] = qa["question"]
                qrels[str(qa["id"])] = {pid: 1}
    return paragraphs, chunk_to_doc, queries, qrels
