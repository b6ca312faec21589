"""Rank fusion: pure functions on ranked lists of (id, score), best first."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

Ranked = Sequence[tuple[int, float]]
Normalization = Literal["minmax", "zscore"]


def _sorted(scores: Mapping[int, float]) -> list[tuple[int, float]]:
    # Ties broken by id so results do not depend on dict order.
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def rrf(rankings: Sequence[Ranked], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks starting at 1."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("rrf() needs one weight per ranking.")
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, (doc, _score) in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + w / (k + rank)
    return _sorted(fused)


def normalize(scores: Mapping[int, float], method: Normalization = "minmax") -> dict[int, float]:
    """Min-max to [0, 1] (all-equal scores map to 1.0) or z-score."""
    if not scores:
        return {}
    values = list(scores.values())
    if method == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:
            return dict.fromkeys(scores, 1.0)
        return {d: (s - lo) / (hi - lo) for d, s in scores.items()}
    if method == "zscore":
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        if std == 0:
            return dict.fromkeys(scores, 0.0)
        return {d: (s - mean) / std for d, s in scores.items()}
    raise ValueError(f"Unknown normalization {method!r}; use minmax or zscore.")


def convex(
    dense: Mapping[int, float] | Ranked,
    lexical: Mapping[int, float] | Ranked,
    alpha: float = 0.5,
    method: Normalization = "minmax",
    dense_only: Collection[int] = (),
) -> list[tuple[int, float]]:
    """alpha * norm(dense) + (1 - alpha) * norm(lexical) over the union of ids.

    Each list is normalized on its own; an id missing from one list gets that list's lowest
    normalized value (0 for min-max), i.e. it is treated as no better than the worst candidate seen.
    Ids in ``dense_only`` are ranked by norm(dense) alone: passages in another language than the question,
    which BM25 cannot match by construction (its zero there is no evidence against them).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}.")
    d = normalize(dict(dense), method)
    lx = normalize(dict(lexical), method)
    d_floor = min(d.values(), default=0.0)
    l_floor = min(lx.values(), default=0.0)
    fused = {
        doc: alpha * d.get(doc, d_floor) + (1.0 - alpha) * lx.get(doc, l_floor) for doc in d.keys() | lx.keys()
    }
    if dense_only:
        for doc in fused:
            if doc in dense_only:
                fused[doc] = d.get(doc, d_floor)
    return _sorted(fused)
