"""Contracts of the retrieval stage: embedder and vector index keyed by chunk primary keys.

Each Protocol lists every member its callers use; ``tests/contracts`` holds the suite every
implementation runs (``isinstance`` against these ``runtime_checkable`` Protocols checks presence only).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Text to L2-normalized float32 vectors, plus the tokenizer views chunking needs.

    Cheap to construct; the model loads on first use.
    """

    model_name: str

    @property
    def dim(self) -> int: ...  # vector length (may load the model)

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...  # (n, dim) float32, L2-normalized, input order

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...  # (n, dim): embed_query of each, in one batch

    def embed_query(self, text: str) -> np.ndarray: ...  # (dim,) float32, L2-normalized

    def count_tokens(self, text: str) -> int: ...  # the model's word pieces, without special tokens

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each word piece in order, one per counted token: the chunker
        (``ingest.chunking``) cuts text at these boundaries."""
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """Vectors under int64 chunk ids, searched by inner product. Derived data: serializable, no pickle."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...  # an id already present is replaced

    def remove(self, ids: np.ndarray) -> None: ...  # unknown ids are ignored

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]: ...  # (chunk id, score) best first; only ids in `allowed` if given

    def score(self, query: np.ndarray, ids: np.ndarray | Iterable[int]) -> dict[int, float]:
        """Exact inner product of ``query`` with each indexed id of ``ids`` (unknown or removed ids are
        left out): hybrid fusion fills in the dense score of a candidate only BM25 returned."""
        ...

    def to_bytes(self) -> bytes: ...  # a snapshot (no pickle) that from_bytes restores

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The index ``to_bytes`` wrote; unreadable data raises ``KbError`` telling to run `kb index rebuild`."""
        ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class SearchHit:
    """One fused result. Component scores are None when that index was not consulted or lacks the id."""

    chunk_id: int
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
