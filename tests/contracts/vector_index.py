"""The VectorIndex contract: exact-enough top-k, ACL filtering before the cut, removal and replacement,
``score`` for hybrid fusion, and persistence through ``to_bytes`` / ``type(index).from_bytes``."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import KbError
from retrieval.types import VectorIndex

DIM = 16
N = 3000


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact(ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[int]:
    order = np.argsort(-(vecs @ q))
    if mask is not None:
        order = order[mask[order]]
    return [int(ids[i]) for i in order[:k]]


class VectorIndexContract:
    """Mixin: a concrete class defines ``make()`` returning an empty index of ``DIM`` dimensions.

    ``exact`` says whether this kind's search is exact (then results must equal brute force). Tests that
    only search share one filled index per class (``full``); tests that change it build their own."""

    exact: bool = False

    def make(self) -> VectorIndex:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(7)
        ids = rng.choice(10**12, size=N, replace=False).astype(np.int64)  # large, sparse int64 ids
        return ids, unit(rng, N)

    @pytest.fixture(scope="class")
    @classmethod
    def full(cls, data) -> VectorIndex:
        """Filled once per class: tests using it must not change it."""
        index = cls().make()
        index.add(*data)
        return index

    @pytest.fixture
    def own(self, data) -> VectorIndex:
        """Filled for one test, which may change it."""
        index = self.make()
        index.add(*data)
        return index

    def test_is_a_vector_index(self) -> None:
        index = self.make()
        assert isinstance(index, VectorIndex)
        assert len(index) == 0
        assert index.search(np.ones(DIM, np.float32) / 4, 5) == []
        assert index.score(np.ones(DIM, np.float32) / 4, [1, 2]) == {}

    def test_search_finds_each_vector_first_and_orders_by_score(self, full: VectorIndex, data) -> None:
        ids, vecs = data
        assert len(full) == len(ids)
        for row in range(0, N, 97):
            hits = full.search(vecs[row], 10)
            assert len(hits) == 10
            assert all(type(i) is int and type(s) is float for i, s in hits)
            assert hits[0][0] == int(ids[row])
            assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
            scores = [s for _, s in hits]
            assert scores == sorted(scores, reverse=True)
            want = exact(ids, vecs, vecs[row], 10)
            if self.exact:
                assert [i for i, _ in hits] == want
            else:  # approximate kinds must still agree with exact search on most of the top 10
                assert len({i for i, _ in hits} & set(want)) >= 8
        assert full.search(vecs[0], 0) == []
        assert len(full.search(vecs[0], N + 50)) == N  # k past the size returns everything once

    def test_remove_and_replace(self, own: VectorIndex, data) -> None:
        ids, vecs = data
        own.remove(ids[:3])  # a few: HNSW and IVF hide them (tombstones) ...
        assert len(own) == N - 3
        assert own.score(vecs[0], ids[:4].tolist()) == pytest.approx({int(ids[3]): float(vecs[3] @ vecs[0])})
        assert int(ids[1]) not in {i for i, _ in own.search(vecs[1], 20)}
        gone = ids[:700]  # ... more than a fifth of the graph forces a compaction
        own.remove(gone)
        own.remove(np.array([123456789], dtype=np.int64))  # unknown ids are ignored
        assert len(own) == N - 700
        gone_set = set(gone.tolist())
        for row in (0, 5, 699):
            assert all(i not in gone_set for i, _ in own.search(vecs[row], 50))
        assert own.score(vecs[0], gone.tolist()) == {}
        # re-adding an id replaces its vector
        own.add(ids[800:801], vecs[0:1])
        assert own.search(vecs[0], 1)[0][0] == int(ids[800])
        assert own.score(vecs[0], [int(ids[800])])[int(ids[800])] == pytest.approx(1.0, abs=1e-5)
        assert len(own) == N - 700
        own.add(ids[:1], vecs[:1])
        assert len(own) == N - 699
        assert own.search(vecs[0], 2)[0][1] == pytest.approx(1.0, abs=1e-5)

    @pytest.mark.parametrize("n_allowed", [1, 3, 50, 2500])
    def test_allowed_never_leaks_and_topk_is_cut_after_filtering(self, full: VectorIndex, data, n_allowed) -> None:
        ids, vecs = data
        rng = np.random.default_rng(n_allowed)
        allowed_rows = rng.choice(len(ids), size=n_allowed, replace=False)
        allowed = set(ids[allowed_rows].tolist()) | {999}  # an id that is not indexed must not appear either
        mask = np.zeros(len(ids), dtype=bool)
        mask[allowed_rows] = True
        q = vecs[int(allowed_rows[0])]
        for k in (1, 2, 5, 10, 100, 5000):
            hits = full.search(q, k, allowed=allowed)
            assert {i for i, _ in hits} <= allowed - {999}
            assert len(hits) == min(k, n_allowed), "filtering must happen before the top-k cut"
            assert hits[0][0] == int(ids[allowed_rows[0]])
            if self.exact and k <= 100:
                assert [i for i, _ in hits] == exact(ids, vecs, q, k, mask)
        assert full.search(q, 5, allowed=set()) == []
        as_array = np.array(sorted(allowed), dtype=np.int64)
        assert full.search(q, 5, allowed=as_array)[0][0] == int(ids[allowed_rows[0]])

    def test_score_is_the_exact_inner_product_of_known_ids(self, full: VectorIndex, data) -> None:
        ids, vecs = data
        q = vecs[42]
        asked = [int(ids[42]), int(ids[1000]), 555]  # itself, another, unknown (removed ids: above)
        scores = full.score(q, asked)
        assert set(scores) == {int(ids[42]), int(ids[1000])}
        assert scores[int(ids[42])] == pytest.approx(1.0, abs=1e-5)
        assert scores[int(ids[1000])] == pytest.approx(float(vecs[1000] @ q), abs=1e-5)
        assert all(type(i) is int and type(s) is float for i, s in scores.items())
        assert full.score(q, np.array([ids[7]], dtype=np.int64)) == pytest.approx({int(ids[7]): float(vecs[7] @ q)})
        for i, s in full.search(q, 5):  # the same number search reports
            assert full.score(q, [i])[i] == pytest.approx(s, abs=1e-5)
        assert full.score(q, []) == {}

    def test_serialization_round_trip(self, own: VectorIndex, data) -> None:
        ids, vecs = data
        full = own
        full.remove(ids[:10])
        blob = full.to_bytes()
        assert isinstance(blob, bytes)
        assert b"pickle" not in blob[:200]
        restored = type(full).from_bytes(blob)
        assert type(restored) is type(full) and isinstance(restored, VectorIndex)
        assert len(restored) == len(full)
        for row in (10, 11, 2999):
            assert restored.search(vecs[row], 10) == full.search(vecs[row], 10)
        assert all(i not in set(ids[:10].tolist()) for i, _ in restored.search(vecs[0], 100))
        allowed = set(ids[100:200].tolist())
        assert restored.search(vecs[150], 7, allowed) == full.search(vecs[150], 7, allowed)
        asked = ids[:20].tolist()
        assert restored.score(vecs[15], asked) == full.score(vecs[15], asked)
        # what comes back is a working index, not a read-only view
        restored.add(ids[:1], vecs[:1])
        restored.remove(ids[10:11])
        assert restored.search(vecs[0], 1)[0][0] == int(ids[0])
        assert int(ids[10]) not in {i for i, _ in restored.search(vecs[10], 20)}
        assert len(restored) == len(full)

    def test_empty_index_round_trips(self, data) -> None:
        ids, vecs = data
        index = self.make()
        restored = type(index).from_bytes(index.to_bytes())
        assert len(restored) == 0 and restored.search(vecs[0], 3) == []
        restored.add(ids[:50], vecs[:50])
        assert restored.search(vecs[3], 1)[0][0] == int(ids[3])

    @pytest.mark.parametrize("cut", [
        "text", "npy_header", "empty", "cut_short"])
    def test_unreadable_bytes_raise_kb_error(self, cut: str) -> None:
        index = self.make()
        blob = index.to_bytes()
        bad = {"text": b"not an index", "npy_header": b"\x93NUMPY" + b"\0" * 64,
               "empty": b"", "cut_short": blob[: len(blob) // 2]}[cut]
        with pytest.raises(KbError, match="kb index rebuild"):
            type(index).from_bytes(bad)

    def test_rejects_bad_input(self) -> None:
        index = self.make()
        with pytest.raises(ValueError, match="same chunk id"):
            index.add(np.array([1, 1]), np.zeros((2, DIM), np.float32))
        with pytest.raises(ValueError, match="ids but"):
            index.add(np.array([1, 2, 3]), np.zeros((2, DIM), np.float32))
        assert len(index) == 0
