"""Contracts of the retrieval stage: embedder and vector index keyed by chunk primary keys."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    dim: int
    model_name: str

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...  # (n, dim) float32, L2-normalized

    def embed_query(self, text: str) -> np.ndarray: ...  # (dim,) float32, L2-normalized

    def count_tokens(self, text: str) -> int: ...


class VectorIndex(Protocol):
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]: ...  # (chunk id, score) best first; only ids in `allowed` if given

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class SearchHit:
    """One fused result. Component scores are None when that index was not consulted or lacks the id."""

    chunk_id: int
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
