"""Every VectorIndex kind (flat, HNSW, IVF, auto switching to HNSW) runs the VectorIndex contract; the
kind-specific behaviour of FaissIndex is tested below it."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from retrieval.dense import FaissIndex, IndexKind, make_vector_index
from tests.contracts.vector_index import DIM, VectorIndexContract, unit


class TestFlatIndex(VectorIndexContract):
    exact = True

    def make(self) -> FaissIndex:
        return FaissIndex(DIM, kind="flat")


class TestHnswIndex(VectorIndexContract):
    def make(self) -> FaissIndex:
        return FaissIndex(DIM, kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)


class TestIvfIndex(VectorIndexContract):
    def make(self) -> FaissIndex:
        return FaissIndex(DIM, kind="ivf", ivf_nprobe=1024)


class TestAutoIndex(VectorIndexContract):
    """Flat below the threshold, HNSW past it: the contract's 3,000 vectors cross it."""

    def make(self) -> FaissIndex:
        return FaissIndex(DIM, kind="auto", approx_threshold=200)


CONTRACT_KINDS = {"flat": TestFlatIndex, "hnsw": TestHnswIndex, "ivf": TestIvfIndex, "auto": TestAutoIndex}


def test_every_kind_runs_the_contract() -> None:
    assert set(get_args(IndexKind)) == set(CONTRACT_KINDS)
    for kind, cls in CONTRACT_KINDS.items():
        assert cls().make().kind == kind


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.choice(10**12, size=3000, replace=False).astype(np.int64), unit(rng, 3000)


def test_auto_switches_to_hnsw_past_threshold(data) -> None:
    ids, vecs = data
    index = TestAutoIndex().make()
    index.add(ids[:150], vecs[:150])
    assert index.structure == "flat"
    index.add(ids[150:], vecs[150:])
    assert index.structure == "hnsw"
    assert index.search(vecs[2000], 1)[0][0] == int(ids[2000])


@pytest.mark.parametrize("kind", sorted(CONTRACT_KINDS))
def test_round_trip_keeps_structure_and_settings(kind: str, data) -> None:
    ids, vecs = data
    index = CONTRACT_KINDS[kind]().make()
    index.add(ids[:300], vecs[:300])  # past auto's threshold of 200
    restored = FaissIndex.from_bytes(index.to_bytes())
    assert (restored.kind, restored.structure, restored.dim) == (index.kind, index.structure, index.dim)
    assert (restored.hnsw_m, restored.ef_search, restored.ivf_nprobe) == (index.hnsw_m, index.ef_search,
                                                                          index.ivf_nprobe)


def test_factory_picks_hnsw_for_large_expected_size() -> None:
    assert make_vector_index(DIM, "auto", approx_threshold=100, use_gpu="never", expected_size=1000).structure == "hnsw"
    assert make_vector_index(DIM, "auto", approx_threshold=100, use_gpu="never").structure == "flat"
