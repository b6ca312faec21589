"""Contract every VectorIndex implementation must meet (flat, HNSW, IVF, auto switching to HNSW)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from retrieval.dense import FaissIndex, make_vector_index
from retrieval.types import VectorIndex

DIM = 16

FACTORIES: dict[str, Callable[[], FaissIndex]] = {
    "flat": lambda: FaissIndex(DIM, kind="flat"),
    "hnsw": lambda: FaissIndex(DIM, kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64),
    "ivf": lambda: FaissIndex(DIM, kind="ivf", ivf_nprobe=1024),
    "auto": lambda: FaissIndex(DIM, kind="auto", approx_threshold=200),
}


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Callable[[], FaissIndex]:
    return FACTORIES[request.param]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ids = rng.choice(10**12, size=3000, replace=False).astype(np.int64)  # large, sparse int64 ids
    return ids, _unit(rng, 3000)


def _exact(ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[int]:
    sims = vecs @ q
    order = np.argsort(-sims)
    if mask is not None:
        order = order[mask[order]]
    return [int(ids[i]) for i in order[:k]]


def test_is_a_vector_index(make: Callable[[], FaissIndex]) -> None:
    index: VectorIndex = make()
    assert len(index) == 0
    assert index.search(np.ones(DIM, np.float32) / 4, 5) == []


def test_search_finds_each_vector_first_and_orders_by_score(make, data) -> None:
    ids, vecs = data
    index = make()
    index.add(ids, vecs)
    assert len(index) == len(ids)
    for row in range(0, 3000, 97):
        hits = index.search(vecs[row], 10)
        assert hits[0][0] == int(ids[row])
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        # approximate kinds must still agree with exact search on most of the top 10
        assert len({i for i, _ in hits} & set(_exact(ids, vecs, vecs[row], 10))) >= 8


def test_auto_switches_to_hnsw_past_threshold(data) -> None:
    ids, vecs = data
    index = FACTORIES["auto"]()
    index.add(ids[:150], vecs[:150])
    assert index.structure == "flat"
    index.add(ids[150:], vecs[150:])
    assert index.structure == "hnsw"
    assert index.search(vecs[2000], 1)[0][0] == int(ids[2000])


def test_remove_and_replace(make, data) -> None:
    ids, vecs = data
    index = make()
    index.add(ids, vecs)
    gone = ids[:700]  # more than a fifth of the HNSW graph: forces a compaction too
    index.remove(gone)
    index.remove(np.array([123456789], dtype=np.int64))  # unknown ids are ignored
    assert len(index) == len(ids) - 700
    gone_set = set(gone.tolist())
    for row in (0, 5, 699):
        assert all(i not in gone_set for i, _ in index.search(vecs[row], 50))
    # re-adding an id replaces its vector
    index.add(ids[800:801], vecs[0:1])
    assert index.search(vecs[0], 1)[0][0] == int(ids[800])
    assert len(index) == len(ids) - 700
    index.add(ids[:1], vecs[:1])
    assert len(index) == len(ids) - 699


@pytest.mark.parametrize("n_allowed", [1, 3, 50, 2500])
def test_allowed_never_leaks_and_topk_is_cut_after_filtering(make, data, n_allowed: int) -> None:
    ids, vecs = data
    index = make()
    index.add(ids, vecs)
    rng = np.random.default_rng(n_allowed)
    allowed_rows = rng.choice(len(ids), size=n_allowed, replace=False)
    allowed = set(ids[allowed_rows].tolist()) | {999}  # an id that is not indexed must not appear either
    mask = np.zeros(len(ids), dtype=bool)
    mask[allowed_rows] = True
    q = vecs[int(allowed_rows[0])]
    for k in (1, 2, 5, 10, 100, 5000):
        hits = index.search(q, k, allowed=allowed)
        assert {i for i, _ in hits} <= allowed - {999}
        assert len(hits) == min(k, n_allowed), "filtering must happen before the top-k cut"
        assert hits[0][0] == int(ids[allowed_rows[0]])
        if index.structure == "flat" and k <= 100:
            assert [i for i, _ in hits] == _exact(ids, vecs, q, k, mask)
    assert index.search(q, 5, allowed=set()) == []
    assert index.search(q, 5, allowed=np.array(sorted(allowed), dtype=np.int64))[0][0] == int(ids[allowed_rows[0]])


def test_serialization_round_trip(make, data) -> None:
    ids, vecs = data
    index = make()
    index.add(ids, vecs)
    index.remove(ids[:10])
    blob = index.to_bytes()
    assert isinstance(blob, bytes)
    assert b"pickle" not in blob[:200]
    restored = FaissIndex.from_bytes(blob)
    assert len(restored) == len(index)
    assert restored.structure == index.structure
    for row in (10, 11, 2999):
        assert restored.search(vecs[row], 10) == index.search(vecs[row], 10)
    assert all(i not in set(ids[:10].tolist()) for i, _ in restored.search(vecs[0], 100))
    allowed = set(ids[100:200].tolist())
    assert restored.search(vecs[150], 7, allowed) == index.search(vecs[150], 7, allowed)


def test_rejects_bad_input() -> None:
    index = FaissIndex(DIM)
    with pytest.raises(ValueError, match="same chunk id"):
        index.add(np.array([1, 1]), np.zeros((2, DIM), np.float32))
    with pytest.raises(ValueError, match="ids but"):
        index.add(np.array([1, 2, 3]), np.zeros((2, DIM), np.float32))


def test_corrupt_bytes_raise_kb_error() -> None:
    from app.errors import KbError

    with pytest.raises(KbError, match="kb index rebuild"):
        FaissIndex.from_bytes(b"not an index")


def test_factory_picks_hnsw_for_large_expected_size() -> None:
    assert make_vector_index(DIM, "auto", approx_threshold=100, use_gpu="never", expected_size=1000).structure == "hnsw"
    assert make_vector_index(DIM, "auto", approx_threshold=100, use_gpu="never").structure == "flat"
