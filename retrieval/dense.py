"""FAISS vector index keyed by chunk ids (``IndexIDMap2``), inner product on normalized vectors.

Kinds: ``flat`` (exact), ``hnsw`` and ``ivf`` (approximate), ``auto`` (flat until ``approx_threshold``
vectors, then converted to HNSW once). The ACL filter runs inside the search through an
``IDSelector`` so the top-k is cut after filtering; on the GPU, where selectors are not supported,
the search widens k until enough allowed ids come back (or falls back to the CPU copy).
The CPU index is always the master copy: it serializes with ``faiss.serialize_index``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import zipfile
from collections.abc import Collection, Iterable
from typing import Literal

import faiss
import numpy as np

from app.errors import KbError

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
GpuMode = Literal["auto", "never", "always"]
_FORMAT = "kb-faiss-v1"
# Below this many allowed ids a brute-force pass over just those vectors beats a filtered graph walk.
_SMALL_ALLOWED = 2048
_GPU_MAX_K = 2048


def gpu_count() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get else 0
    except RuntimeError:
        return 0


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    return np.fromiter((int(i) for i in ids), dtype=np.int64)


class FaissIndex:
    """Implements :class:`retrieval.types.VectorIndex`."""

    def __init__(
        self,
        dim: int,
        kind: IndexKind = "flat",
        approx_threshold: int = 500_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,  # recall@10 0.95 at 1M chunks (0.82 at 96), ~3 ms on 2 cores
        ivf_nprobe: int = 32,
        use_gpu: GpuMode = "never",
    ) -> None:
        if kind not in ("auto", "flat", "hnsw", "ivf"):
            raise ValueError(f"Unknown index kind {kind!r}; use auto, flat, hnsw or ivf.")
        self.dim = int(dim)
        self.kind: IndexKind = kind
        self.approx_threshold = int(approx_threshold)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.ivf_nprobe = ivf_nprobe
        self.use_gpu = use_gpu
        self._lock = threading.RLock()
        # Set by an owner that rebuilds in the background (app.services.search): add/remove then never
        # convert or compact inline, the owner asks rebuild_due() and swaps in rebuilt(...) instead.
        self.defer_rebuilds = False
        self._tombstones: set[int] = set()  # removed ids still stored in an HNSW graph
        self._gpu_index: faiss.Index | None = None
        self._gpu_dirty = True
        self._index = self._new_index("hnsw" if kind == "hnsw" else "ivf" if kind == "ivf" else "flat")
        if use_gpu == "always" and gpu_count() == 0:
            raise KbError("use_gpu is 'always' but faiss sees no GPU. Install faiss-gpu or set use_gpu=auto.")

    # ---- construction -----------------------------------------------------------------------

    @property
    def structure(self) -> str:
        """The structure in use now: flat, hnsw or ivf."""
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexIVF):
            return "ivf"
        return "flat"

    def _new_index(self, structure: str, train: np.ndarray | None = None) -> faiss.IndexIDMap2:
        if structure == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        elif structure == "ivf":
            n = 0 if train is None else train.shape[0]
            nlist = int(min(max(1, 4 * np.sqrt(max(n, 1))), max(1, n // 39), 65536))
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.nprobe = min(self.ivf_nprobe, nlist)
            if train is not None and n:
                inner.train(train)
            inner.make_direct_map()  # internal ids are 0..n-1 under IDMap2: lets reconstruct work
            return faiss.IndexIDMap2(inner)  # faiss's wrappers keep inner and quantizer referenced
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def _all_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _live_ids(self) -> np.ndarray:
        ids = self._all_ids()
        if self._tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))]
        return ids

    def _rebuild(self, structure: str) -> None:
        """Copy live vectors into a fresh index of ``structure`` (HNSW compaction, flat -> HNSW)."""
        ids = self._live_ids()
        vecs = self._index.reconstruct_batch(ids) if ids.size else np.zeros((0, self.dim), np.float32)
        self._index = self._new_index(structure, train=vecs if structure == "ivf" else None)
        self._tombstones.clear()
        if ids.size:
            self._index.add_with_ids(vecs, ids)
        self._gpu_dirty = True

    # ---- rebuilding beside a live index -------------------------------------------------------

    def rebuild_due(self) -> str | None:
        """The structure a rebuild should produce now, or None: HNSW once ``auto`` passes the threshold,
        the same structure again when a fifth of an approximate index is tombstones."""
        with self._lock:
            if self.kind == "auto" and self.structure == "flat" and len(self) > self.approx_threshold:
                return "hnsw"
            if self.structure in ("hnsw", "ivf") and len(self._tombstones) > 0.2 * max(self._index.ntotal, 1):
                return self.structure
            return None

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry: a copy, so a rebuild can run without this index's lock."""
        with self._lock:
            ids = self._live_ids()
            vecs = self._index.reconstruct_batch(ids) if ids.size else np.zeros((0, self.dim), np.float32)
            return ids, vecs

    def rebuilt(self, structure: str, ids: np.ndarray, vectors: np.ndarray) -> FaissIndex:
        """A new index with this one's settings, of ``structure``, holding ``ids``/``vectors``. Touches
        nothing of this index, so searches go on here while it is built."""
        new = FaissIndex(self.dim, kind=self.kind, approx_threshold=self.approx_threshold, hnsw_m=self.hnsw_m,
                         ef_construction=self.ef_construction, ef_search=self.ef_search,
                         ivf_nprobe=self.ivf_nprobe, use_gpu=self.use_gpu)
        new.defer_rebuilds = self.defer_rebuilds
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        new._index = new._new_index(structure, train=vectors if structure == "ivf" else None)
        if ids.size:
            new._index.add_with_ids(vectors, _as_ids(ids))
        return new

    # ---- VectorIndex ------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under chunk ids; an id already present is replaced."""
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if ids.size != vectors.shape[0]:
            raise ValueError(f"add() got {ids.size} ids but {vectors.shape[0]} vectors.")
        if np.unique(ids).size != ids.size:
            raise ValueError("add() got the same chunk id twice in one batch.")
        if ids.size == 0:
            return
        with self._lock:
            present = ids[np.isin(ids, self._all_ids())]
            if present.size:
                self.remove(present)
                if self._tombstones & set(present.tolist()):
                    self._rebuild(self.structure)  # the graph still holds the old vectors under these ids
            inner = faiss.downcast_index(self._index.index)
            if isinstance(inner, faiss.IndexIVF) and not inner.is_trained:
                self._index = self._new_index("ivf", train=vectors)
            self._index.add_with_ids(vectors, ids)
            self._gpu_dirty = True
            if not self.defer_rebuilds and self.kind == "auto" and self.structure == "flat" and \
                    len(self) > self.approx_threshold:
                log.info("Vector index passed %d chunks: converting to HNSW.", self.approx_threshold)
                self._rebuild("hnsw")

    def remove(self, ids: np.ndarray | Iterable[int]) -> None:
        """Remove chunk ids (unknown ids are ignored)."""
        ids = _as_ids(ids)
        if ids.size == 0:
            return
        with self._lock:
            if self.structure in ("hnsw", "ivf"):
                # HNSW graphs cannot delete, and IVF lists do not shift ids the way IDMap2 expects:
                # hide the ids, compact when a fifth is dead.
                present = ids[np.isin(ids, self._all_ids())]
                self._tombstones.update(present.tolist())
                if not self.defer_rebuilds and self.rebuild_due():
                    self._rebuild(self.structure)
            else:
                self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._gpu_dirty = True

    def vectors(self, ids: np.ndarray | Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids present, their vectors) for the requested ids."""
        ids = _as_ids(ids)
        with self._lock:
            ids = ids[np.isin(ids, self._live_ids())]
            if ids.size == 0:
                return ids, np.zeros((0, self.dim), np.float32)
            return ids, self._index.reconstruct_batch(ids)

    def score(self, query: np.ndarray, ids: np.ndarray | Iterable[int]) -> dict[int, float]:
        """Inner product of the query with specific chunk ids (unknown ids are skipped)."""
        present, vecs = self.vectors(ids)
        sims = vecs @ np.asarray(query, dtype=np.float32).reshape(-1)
        return dict(zip(present.tolist(), sims.tolist(), strict=True))

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (chunk id, inner product), best first; only ids in ``allowed`` when given."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            n = len(self)
            if k <= 0 or n == 0:
                return []
            allowed_arr = None
            if allowed is not None:
                allowed_arr = _as_ids(allowed) if not isinstance(allowed, np.ndarray) else _as_ids(allowed)
                if allowed_arr.size == 0:
                    return []
                if allowed_arr.size <= _SMALL_ALLOWED:
                    return self._search_subset(q, k, allowed_arr)
            k = min(k, n)
            if self._gpu_wanted():
                hits = self._search_gpu(q, k, allowed_arr)
                if hits is not None:
                    return hits
            return self._search_cpu(q, k, allowed_arr)

    def _search_subset(self, q: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        # Exact over just the allowed vectors: cheap for small grants, and exact whatever the structure.
        ids, vecs = self.vectors(np.unique(allowed))
        if ids.size == 0:
            return []
        sims = vecs @ q[0]
        top = np.argsort(-sims, kind="stable")[:k]
        return [(int(ids[i]), float(sims[i])) for i in top]

    def _selector(self, allowed: np.ndarray | None) -> tuple[faiss.IDSelector | None, list[object]]:
        keep: list[object] = []  # python wrappers must outlive the search call
        sel = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(allowed)
            keep.append(sel)
        if self._tombstones:
            dead = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            alive = faiss.IDSelectorNot(dead)
            keep += [dead, alive]
            sel = alive if sel is None else faiss.IDSelectorAnd(sel, alive)
            keep.append(sel)
        return sel, keep

    def _search_cpu(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        sel, _keep = self._selector(allowed)
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif isinstance(inner, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(nprobe=min(self.ivf_nprobe, inner.nlist))
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        scores, ids = self._index.search(q, k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    # ---- GPU --------------------------------------------------------------------------------

    def _gpu_wanted(self) -> bool:
        return self.use_gpu != "never" and self.structure == "flat" and gpu_count() > 0

    def _search_gpu(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]] | None:
        try:
            if self._gpu_index is None or self._gpu_dirty:
                res = getattr(self, "_gpu_res", None) or faiss.StandardGpuResources()
                self._gpu_res = res
                self._gpu_index = faiss.index_cpu_to_gpu(res, 0, self._index)
                self._gpu_dirty = False
        except (AttributeError, RuntimeError) as exc:
            log.warning("FAISS GPU unavailable (%s); searching on the CPU.", exc)
            self.use_gpu = "never"
            return None
        n = len(self)
        if allowed is None:
            scores, ids = self._gpu_index.search(q, min(k, _GPU_MAX_K))
            if k > _GPU_MAX_K:
                return None
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        # No selectors on the GPU: widen k until k allowed ids are found or everything was seen.
        allowed_set = np.unique(allowed)
        want = k * 4
        while True:
            kk = min(want, n)
            if kk > _GPU_MAX_K:
                return None  # too selective for the GPU: the CPU selector path is exact and cheap enough
            scores, ids = self._gpu_index.search(q, kk)
            mask = (ids[0] >= 0) & np.isin(ids[0], allowed_set)
            hits = [(int(i), float(s)) for i, s in zip(ids[0][mask], scores[0][mask], strict=True)]
            if len(hits) >= k or kk >= n:
                return hits[:k]
            want *= 4

    # ---- persistence ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize as .npz: the faiss index (serialize_index), tombstones and settings. No pickle."""
        with self._lock:
            meta = {
                "format": _FORMAT,
                "dim": self.dim,
                "kind": self.kind,
                "approx_threshold": self.approx_threshold,
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "ivf_nprobe": self.ivf_nprobe,
            }
            buf = io.BytesIO()
            np.savez(
                buf,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                index=faiss.serialize_index(self._index),
                tombstones=np.fromiter(self._tombstones, dtype=np.int64, count=len(self._tombstones)),
            )
            return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, use_gpu: GpuMode = "never") -> FaissIndex:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"unknown format {meta.get('format')!r}")
                raw = z["index"]
                tombstones = z["tombstones"]
            index = faiss.deserialize_index(raw)
        except (ValueError, KeyError, OSError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
            raise KbError(
                f"The vector index file is unreadable ({exc}). Rebuild it with `kb index rebuild`."
            ) from exc
        obj = cls(
            dim=meta["dim"],
            kind=meta["kind"],
            approx_threshold=meta["approx_threshold"],
            hnsw_m=meta["hnsw_m"],
            ef_construction=meta["ef_construction"],
            ef_search=meta["ef_search"],
            ivf_nprobe=meta["ivf_nprobe"],
            use_gpu=use_gpu,
        )
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.downcast_index(index)
        if not isinstance(index, faiss.IndexIDMap2) or index.d != obj.dim:
            raise KbError("The vector index file holds an unexpected index type. Rebuild it with `kb index rebuild`.")
        obj._index = index
        obj._tombstones = set(tombstones.tolist())
        return obj


def make_vector_index(
    dim: int,
    kind: IndexKind = "auto",
    approx_threshold: int = 500_000,
    use_gpu: GpuMode = "auto",
    expected_size: int = 0,
    hnsw_m: int = 32,
    ef_search: int = 256,
) -> FaissIndex:
    """Build an empty index; with ``auto`` and a known ``expected_size`` above the threshold, start as HNSW."""
    if kind == "auto" and expected_size > approx_threshold:
        kind = "hnsw"
    return FaissIndex(dim, kind=kind, approx_threshold=approx_threshold, use_gpu=use_gpu, hnsw_m=hnsw_m,
                      ef_search=ef_search)
