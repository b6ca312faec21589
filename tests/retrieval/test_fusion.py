"""Fusion functions against hand-computed values."""

from __future__ import annotations

import pytest

from retrieval.fusion import convex, normalize, rrf


def test_rrf_hand_computed() -> None:
    dense = [(1, 0.9), (2, 0.8)]
    lexical = [(2, 5.0), (3, 4.0)]
    fused = rrf([dense, lexical], k=60)
    assert [d for d, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1][1] == pytest.approx(1 / 61)
    assert fused[2][1] == pytest.approx(1 / 62)
    weighted = rrf([dense, lexical], k=1, weights=[2.0, 1.0])
    assert dict(weighted) == pytest.approx({1: 1.0, 2: 2 / 3 + 1 / 2, 3: 1 / 3})
    with pytest.raises(ValueError):
        rrf([dense], weights=[1.0, 2.0])


def test_normalize() -> None:
    assert normalize({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert normalize({1: 5.0, 2: 5.0}) == {1: 1.0, 2: 1.0}
    z = normalize({1: 1.0, 2: 3.0}, "zscore")
    assert z == pytest.approx({1: -1.0, 2: 1.0})
    assert normalize({}) == {}


def test_convex_hand_computed() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.1}  # min-max -> 1.0, 0.5, 0.0
    lexical = [(3, 20.0), (2, 10.0)]  # min-max -> 3: 1.0, 2: 0.0; id 1 missing -> 0.0
    half = convex(dense, lexical, alpha=0.5)
    assert half == [(1, pytest.approx(0.5)), (3, pytest.approx(0.5)), (2, pytest.approx(0.25))]
    mostly_dense = convex(dense, lexical, alpha=0.8)
    assert [d for d, _ in mostly_dense] == [1, 2, 3]
    assert dict(mostly_dense) == pytest.approx({1: 0.8, 2: 0.4, 3: 0.2})
    assert [d for d, _ in convex(dense, lexical, alpha=0.0)] == [3, 1, 2]
    with pytest.raises(ValueError):
        convex(dense, lexical, alpha=1.5)


def test_convex_with_one_side_empty() -> None:
    assert convex({}, {7: 3.0, 8: 1.0}, alpha=0.5) == [(7, 0.5), (8, 0.0)]


def test_convex_ranks_dense_only_ids_by_similarity_alone() -> None:
    from retrieval.fusion import convex

    dense = {1: 0.9, 2: 0.6, 3: 0.5}  # 1: a passage in the other language, the closest in meaning
    lexical = {2: 12.0, 3: 3.0}  # BM25 cannot match it at all
    assert convex(dense, lexical, alpha=0.5)[0][0] == 2
    fused = dict(convex(dense, lexical, alpha=0.5, dense_only={1}))
    assert fused[1] == 1.0 and max(fused, key=fused.get) == 1
    assert fused[2] == convex(dense, lexical, alpha=0.5)[0][1]  # the others keep their fused score
