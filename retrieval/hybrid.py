"""Hybrid search: dense (FAISS) and lexical (BM25) candidates, fused by RRF or convex combination.

Both indexes apply the caller's ``allowed`` chunk ids inside their own search, so fused results can
never contain an id outside it. For convex fusion the missing component score of a candidate that
only one index returned is looked up exactly (vector inner product / BM25 of that chunk), so every
candidate is compared on both signals.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from retrieval import fusion as fusion_fns
from retrieval.types import Embedder, SearchHit, VectorIndex

if TYPE_CHECKING:
    from app.settings import RetrievalSettings
    from retrieval.lexical import BM25Index

Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal["rrf", "convex"]


@dataclass
class Candidates:
    """Per-index candidate lists (best first) and every component score known for the union."""

    dense: list[tuple[int, float]] = field(default_factory=list)
    bm25: list[tuple[int, float]] = field(default_factory=list)
    dense_scores: dict[int, float] = field(default_factory=dict)
    bm25_scores: dict[int, float] = field(default_factory=dict)


class HybridSearcher:
    def __init__(
        self,
        embedder: Embedder | None,
        dense: VectorIndex | None,
        lexical: BM25Index | None,
        mode: Mode = "hybrid",
        fusion: Fusion = "convex",
        alpha: float = 0.5,
        rrf_k: int = 60,
        candidates: int = 100,
        fill_missing_scores: bool = True,
        dense_only: Collection[int] = (),
    ) -> None:
        """``dense_only``: chunk ids that convex fusion ranks by the dense score alone (passages in another
        language than the query: BM25 cannot match them)."""
        if mode in ("dense", "hybrid") and (embedder is None or dense is None):
            raise ValueError(f"mode {mode!r} needs an embedder and a dense index.")
        if mode in ("bm25", "hybrid") and lexical is None:
            raise ValueError(f"mode {mode!r} needs a BM25 index.")
        self.embedder = embedder
        self.dense = dense
        self.lexical = lexical
        self.mode: Mode = mode
        self.fusion: Fusion = fusion
        self.alpha = alpha
        self.rrf_k = rrf_k
        self.n_candidates = candidates
        self.fill_missing_scores = fill_missing_scores
        self.dense_only = dense_only

    @classmethod
    def from_settings(
        cls,
        settings: RetrievalSettings,
        embedder: Embedder | None,
        dense: VectorIndex | None,
        lexical: BM25Index | None,
    ) -> HybridSearcher:
        return cls(
            embedder,
            dense,
            lexical,
            mode=settings.mode,
            fusion=settings.fusion,
            alpha=settings.convex_alpha,
            rrf_k=settings.rrf_k,
            candidates=settings.candidates,
        )

    def gather(
        self,
        query: str,
        allowed: Collection[int] | None = None,
        query_vector: np.ndarray | None = None,
        n: int | None = None,
    ) -> Candidates:
        """Candidates from each index the mode uses (``n`` each), with missing scores filled in."""
        n = n or self.n_candidates
        out = Candidates()
        if self.mode in ("dense", "hybrid"):
            assert self.embedder is not None and self.dense is not None  # noqa: S101 - checked in __init__
            qvec = query_vector if query_vector is not None else self.embedder.embed_query(query)
            out.dense = self.dense.search(qvec, n, allowed)
            out.dense_scores = dict(out.dense)
        if self.mode in ("bm25", "hybrid"):
            assert self.lexical is not None  # noqa: S101
            out.bm25 = self.lexical.search(query, n, allowed)
            out.bm25_scores = dict(out.bm25)
        if self.mode == "hybrid" and self.fill_missing_scores:
            missing_dense = [i for i in out.bm25_scores if i not in out.dense_scores]
            if missing_dense:
                out.dense_scores.update(self.dense.score(qvec, missing_dense))  # type: ignore[union-attr]
            missing_bm25 = [i for i in out.dense_scores if i not in out.bm25_scores]
            if missing_bm25:
                out.bm25_scores.update(self.lexical.score(query, missing_bm25))  # type: ignore[union-attr]
        return out

    def fuse(self, cands: Candidates, k: int) -> list[SearchHit]:
        """Rank gathered candidates by this searcher's mode and fusion."""
        return fuse_candidates(cands, k, self.mode, self.fusion, self.alpha, self.rrf_k, self.dense_only)

    def search(
        self,
        query: str,
        k: int,
        allowed: Collection[int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """Top-k fused hits, best first, only among ``allowed`` chunk ids when given."""
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        return self.fuse(self.gather(query, allowed, query_vector, n=max(self.n_candidates, k)), k)


def fuse_candidates(
    cands: Candidates, k: int, mode: Mode = "hybrid", fusion: Fusion = "convex", alpha: float = 0.5, rrf_k: int = 60,
    dense_only: Collection[int] = (),
) -> list[SearchHit]:
    """Top-k hits from gathered candidates: one index's list, or both fused by RRF / convex."""
    if mode == "dense":
        ranked = cands.dense
    elif mode == "bm25":
        ranked = cands.bm25
    elif fusion == "rrf":
        ranked = fusion_fns.rrf([cands.dense, cands.bm25], k=rrf_k)
    else:
        ranked = fusion_fns.convex(cands.dense_scores, cands.bm25_scores, alpha=alpha, dense_only=dense_only)
    return [
        SearchHit(cid, float(score), cands.dense_scores.get(cid), cands.bm25_scores.get(cid))
        for cid, score in ranked[:k]
    ]
