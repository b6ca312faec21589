"""The process's search index: dense + BM25 over every chunk, filtered by the caller's grants.

Indexes are derived data. On first use they are loaded from sealed snapshots under
``data/index/`` (or rebuilt from the chunks table), then kept in step with the database by
following ``index_events`` past a watermark, so chunks added or deleted by any worker show up
without a restart. Access control happens inside the search: only chunk ids of collections the
caller may read are candidates, so no k can leak a chunk of another collection.

Rebuilds never make a search wait: past ``retrieval.approx_threshold`` chunks (and when a fifth of an
HNSW graph is deleted entries) the dense index's successor is built in a background thread from a copy
of the vectors while searches go on with the current one; changes made meanwhile are replayed onto it
and it is swapped in under the lock in one assignment. ``rebuild`` (``kb index rebuild``) likewise
reads the chunks table without holding the search lock.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import audit, crypto
from app.errors import KbError
from app.models import Chunk, Collection, Document, IndexEvent
from app.services.caller import Caller, Principal, actor, require_role
from retrieval.dense import make_vector_index
from retrieval.embedder import text_language
from retrieval.hybrid import HybridSearcher
from retrieval.lexical import BM25Index
from retrieval.types import SearchHit

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
SNAPSHOT_EVERY_S = 120.0
SNAPSHOT_KEEP_S = 600.0  # old snapshot generations are removed after this long


@dataclass
class Passage:
    """A retrieved chunk with where it came from, ready for a prompt or a citation."""

    chunk_id: int
    document_id: int
    collection: str
    source: str
    title: str | None
    page: int | None
    sheet: str | None
    heading: str | None
    text: str
    score: float
    dense_score: float | None
    bm25_score: float | None

    @property
    def position(self) -> str:
        parts = []
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.sheet:
            parts.append(f"sheet {self.sheet}")
        if self.heading:
            parts.append(f"§ {self.heading}")
        return ", ".join(parts)


class SearchIndex:
    def __init__(self, container):
        self.c = container
        self._lock = threading.RLock()
        self._loaded = False
        self._watermark = 0
        self._collection_of: dict[int, int] = {}
        self._zh: set[int] = set()  # chunk ids whose text is Chinese (language-aware fusion, below)
        self._dense = None
        self._bm25: BM25Index | None = None
        self._last_snapshot = 0.0
        self._dirty = False
        self._allowed: dict[frozenset[int], set[int]] = {}
        self._build_lock = threading.Lock()  # one rebuild at a time (background or `rebuild`)
        self._pending: list[tuple[str, np.ndarray]] | None = None  # dense changes made during a background build
        self._builder: threading.Thread | None = None

    # --- building ------------------------------------------------------------------------------
    def _new_indexes(self, expected: int):
        r = self.c.settings.retrieval
        dense = make_vector_index(self.c.embedder.dim, kind=r.index_kind, approx_threshold=r.approx_threshold,
                                  use_gpu=r.use_gpu, expected_size=expected, hnsw_m=r.hnsw_m,
                                  ef_search=r.hnsw_ef_search)
        dense.defer_rebuilds = True  # conversions and compactions run beside the live index (below)
        return dense, BM25Index(k1=r.bm25_k1, b=r.bm25_b, tokenizer=r.tokenizer, **bm25_options(r))

    def _ensure(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if not self._load_snapshot():
                self.rebuild()
            self._loaded = True

    def rebuild(self, progress=None) -> int:
        """Recreate both indexes from the chunks table. Returns the chunk count. Searches go on with the
        current indexes meanwhile; events applied to those after the new ones' watermark are applied again
        by the next refresh (adding a chunk already present is skipped, removing an absent one is a no-op)."""
        with self._build_lock, self.c.sessions() as s:
            watermark = s.scalar(select(func.max(IndexEvent.id))) or 0
            total = s.scalar(select(func.count()).select_from(Chunk)) or 0
            dense, bm25 = self._new_indexes(total)
            collection_of: dict[int, int] = {}
            last_id = 0
            zh: set[int] = set()
            reembed: bool | None = None  # decided on the first page: were the stored vectors made by this embedder?
            while True:  # page through by primary key so memory stays bounded
                rows = s.scalars(select(Chunk).where(Chunk.id > last_id).order_by(Chunk.id).limit(2000)).all()
                if not rows:
                    break
                ids, texts, vecs = self._open_rows(s, rows)
                if reembed is None:
                    reembed = self._vectors_stale(texts, vecs)
                    if reembed:
                        log.warning("the chunks' vectors were made by another embedder than %s: embedding all %d "
                                    "chunks again", self.c.settings.retrieval.embedder_model, total)
                if reembed:
                    vecs = self._reembed(rows, texts)
                dense.add(ids, vecs)
                bm25.add(ids.tolist(), texts)
                collection_of.update({r.id: r.collection_id for r in rows})
                zh.update(int(i) for i, t in zip(ids, texts, strict=True) if text_language(t) == "zh")
                last_id = rows[-1].id
                if progress:
                    progress(len(rows))
                s.expunge_all()
            with self._lock:
                self._dense, self._bm25, self._collection_of, self._watermark = dense, bm25, collection_of, watermark
                self._zh = zh
                self._allowed.clear()
                self._loaded = True
                self._dirty = True
                self.save_snapshot(force=True)
            return len(collection_of)

    def _vectors_stale(self, texts: list[str], vecs: np.ndarray, probe: int = 4) -> bool:
        """Whether stored vectors come from another embedder: the embedder is part of the index identity, and
        the chunks table does not record which one made its vectors. Embedding a few chunks again tells: the
        same model gives cosine ~1 (0.96+ across precisions), another one a different space (MiniLM against
        e5: ~0), or another dimension."""
        if not texts:
            return False
        fresh = self.c.embedder.embed_passages(texts[:probe])
        if fresh.shape[1] != vecs.shape[1]:
            return True
        return float(np.mean(np.sum(fresh * vecs[:probe], axis=1))) < 0.9

    def _reembed(self, rows: list[Chunk], texts: list[str]) -> np.ndarray:
        """New vectors for ``rows`` from their text, sealed back into the chunks table."""
        vecs = self.c.embedder.embed_passages(texts)
        with self.c.sessions.begin() as w:
            deks: dict[int, bytes] = {}
            for row, vec in zip(rows, vecs, strict=True):
                if row.document_id not in deks:
                    deks[row.document_id] = self.c.vault.data_key(w, w.get(Document, row.document_id).dek_id)
                sealed = self.c.vault.seal(deks[row.document_id], np.asarray(vec, dtype="<f4").tobytes(), "vectors",
                                           row.document_id, row.idx)
                w.execute(update(Chunk).where(Chunk.id == row.id).values(vector_sealed=sealed))
        return vecs

    def _open_rows(self, s: Session, rows: list[Chunk]) -> tuple[np.ndarray, list[str], np.ndarray]:
        deks: dict[int, bytes] = {}
        texts, vecs = [], []
        for r in rows:
            if r.document_id not in deks:
                doc = s.get(Document, r.document_id)
                deks[r.document_id] = self.c.vault.data_key(s, doc.dek_id)
            dek = deks[r.document_id]
            texts.append(self.c.vault.open_text(dek, r.text_sealed, "chunks", r.document_id, r.idx))
            vecs.append(np.frombuffer(self.c.vault.open(dek, r.vector_sealed, "vectors", r.document_id, r.idx),
                                      dtype="<f4"))
        return np.array([r.id for r in rows], dtype=np.int64), texts, np.vstack(vecs).astype(np.float32)

    def refresh(self) -> int:
        """Apply chunk additions and removals recorded since the watermark. Returns events applied."""
        self._ensure()
        with self._lock, self.c.sessions() as s:
            events = s.scalars(select(IndexEvent).where(IndexEvent.id > self._watermark)
                               .order_by(IndexEvent.id).limit(5000)).all()
            for ev in events:
                if ev.op == "remove":
                    ids = np.array(ev.chunk_ids, dtype=np.int64)
                    self._dense.remove(ids)
                    self._bm25.remove(ev.chunk_ids)
                    for i in ev.chunk_ids:
                        self._collection_of.pop(i, None)
                        self._zh.discard(i)
                    self._note("remove", ids)
                else:
                    # Chunks are immutable: one already held (a rebuild read it before this event) is skipped.
                    new_ids = [i for i in ev.chunk_ids if i not in self._collection_of]
                    rows = s.scalars(select(Chunk).where(Chunk.id.in_(new_ids)).order_by(Chunk.id)).all() \
                        if new_ids else []
                    if rows:  # rows may be gone already if the document was deleted later
                        ids, texts, vecs = self._open_rows(s, rows)
                        self._dense.add(ids, vecs)
                        self._bm25.add(ids.tolist(), texts)
                        self._collection_of.update({r.id: r.collection_id for r in rows})
                        self._zh.update(int(i) for i, t in zip(ids, texts, strict=True) if text_language(t) == "zh")
                        self._note("add", ids)
                self._watermark = ev.id
            if events:
                self._dirty = True
                self._allowed.clear()
                if time.monotonic() - self._last_snapshot > SNAPSHOT_EVERY_S:
                    self.save_snapshot()
            self._start_background_rebuild()
            return len(events)

    def watermark(self) -> int:
        """The last index event the index has applied (after applying pending ones): its state."""
        self.refresh()
        return self._watermark

    # --- background rebuilds of the dense index ------------------------------------------------
    @property
    def building(self) -> bool:
        """Whether a successor of the dense index is being built in the background now."""
        return self._builder is not None and self._builder.is_alive()

    def wait_for_build(self, timeout: float | None = None) -> bool:
        """Wait until no background build runs; False if one still runs after ``timeout`` seconds."""
        t = self._builder
        if t is not None:
            t.join(timeout)
        return not self.building

    def _note(self, op: str, ids: np.ndarray) -> None:
        if self._pending is not None:
            self._pending.append((op, ids))

    def _start_background_rebuild(self) -> None:
        """Called under the lock: start building the dense index's successor when one is due."""
        dense = self._dense
        if dense is None or self._pending is not None or not getattr(dense, "defer_rebuilds", False):
            return
        structure = dense.rebuild_due()
        if structure is None or not self._build_lock.acquire(blocking=False):
            return
        self._pending = []  # from now on every change to ``dense`` is noted, to replay onto the successor
        log.info("Building a %s vector index of %d chunks in the background.", structure, len(dense))
        self._builder = threading.Thread(target=self._build_and_swap, args=(dense, structure),
                                         name="kb-index-build", daemon=True)
        self._builder.start()

    def _build_and_swap(self, old, structure: str) -> None:
        try:
            t0 = time.perf_counter()
            ids, vecs = old.live_vectors()  # a copy taken under the dense index's own lock only
            new = old.rebuilt(structure, ids, vecs)
            del vecs
            with self._lock:
                if self._dense is not old:  # replaced meanwhile (a rebuild or a snapshot load): drop this one
                    return
                for op, changed in self._pending or []:
                    if op == "remove":
                        new.remove(changed)
                        continue
                    present, pvecs = old.vectors(changed)
                    have, _ = new.vectors(present)  # already in the copy: the same immutable chunk
                    keep = ~np.isin(present, have)
                    if keep.any():
                        new.add(present[keep], pvecs[keep])
                self._dense = new
                self._dirty = True
            log.info("Swapped in the %s vector index (%d chunks) after %.1f s.", structure, len(new),
                     time.perf_counter() - t0)
        except Exception:
            log.exception("Background vector index build failed; the current index stays in use.")
        finally:
            with self._lock:
                self._pending = None
            self._build_lock.release()

    # --- snapshots (sealed) --------------------------------------------------------------------
    # Several replicas may share one data dir. Each snapshot goes to its own generation folder
    # (index/g-<random>/, never written twice), and manifest.json, replaced atomically, names the
    # generation, its key and its watermark. A reader opens the generation the manifest named; a writer
    # never touches a generation another wrote, and one whose watermark is behind the manifest's leaves
    # it alone. Old generations are removed after SNAPSHOT_KEEP_S (long past any reader still opening them).
    @property
    def _dir(self) -> Path:
        return self.c.settings.index_dir

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self._dir / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("index snapshot manifest unreadable; it will be rewritten")
            return None

    def _snapshot_key(self, manifest: dict | None, create: bool) -> tuple[str, bytes] | None:
        if manifest is not None and manifest.get("dek_id"):
            with self.c.sessions() as s:
                try:
                    return manifest["dek_id"], self.c.vault.data_key(s, manifest["dek_id"])
                except Exception:
                    log.warning("index snapshot key is gone; snapshot will be rebuilt")
        if not create:
            return None
        with self.c.sessions.begin() as s:
            return self.c.vault.new_data_key_named(s, "index-")

    def save_snapshot(self, force: bool = False) -> None:
        """Seal the indexes to a new generation. Unless ``force`` (a rebuild), skipped when the manifest
        already names a snapshot at this watermark or later."""
        if not self._dirty or self._dense is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        current = self._read_manifest()
        newer = current is not None and current.get("format") == 2 and \
            int(current.get("watermark", -1)) >= self._watermark and (self._dir / current["generation"]).is_dir()
        if newer and not force:
            self._last_snapshot, self._dirty = time.monotonic(), False  # another replica saved as much or more
            return
        dek_id, dek = self._snapshot_key(current, create=True)
        cipher = self.c.vault.cipher_for(dek)
        generation = f"g-{uuid.uuid4().hex}"
        gen_dir = self._dir / generation
        gen_dir.mkdir()
        meta = {"watermark": self._watermark,
                "chunks": [[k, v] for k, v in self._collection_of.items()],
                "embedder": self.c.settings.retrieval.embedder_model, "tokenizer": self.c.settings.retrieval.tokenizer,
                "bm25": bm25_options(self.c.settings.retrieval), "zh": sorted(self._zh)}
        for name, data in (("dense", self._dense.to_bytes()), ("bm25", self._bm25.to_bytes()),
                           ("meta", json.dumps(meta).encode())):
            crypto.seal_bytes_to_file(cipher, dek, data, gen_dir / f"{name}.kbf",
                                      crypto.aad_of("index", generation, name))
        body = json.dumps({"format": 2, "dek_id": dek_id, "generation": generation, "watermark": self._watermark})
        tmp = self._dir / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(body)
        os.replace(tmp, self._dir / MANIFEST)  # readers see the old snapshot or this one, never a mix
        self._last_snapshot, self._dirty = time.monotonic(), False
        self._prune(keep=generation)

    def _prune(self, keep: str) -> None:
        """Remove generations (and stray temporary files) older than SNAPSHOT_KEEP_S, except ``keep``
        and whatever the manifest names now."""
        now = time.time()
        named = (self._read_manifest() or {}).get("generation")
        for p in self._dir.iterdir():
            if p.name in (keep, named, MANIFEST) or not (p.name.startswith(("g-", ".manifest.json.")) or
                                                        p.suffix == ".kbf"):
                continue
            try:
                if now - p.stat().st_mtime > SNAPSHOT_KEEP_S:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            except OSError:  # another replica pruned it first
                pass

    def load_snapshot(self) -> bool:
        """Load the latest sealed snapshot (no rebuild when there is none or it is unreadable)."""
        with self._lock:
            ok = self._load_snapshot()
            self._loaded = self._loaded or ok
            return ok

    def chunk_ids(self) -> set[int]:
        """Every chunk id the index holds."""
        self._ensure()
        with self._lock:
            return set(self._collection_of)

    def snapshot_info(self) -> dict | None:
        """What manifest.json says of the latest snapshot (format, generation, watermark), or None."""
        return self._read_manifest()

    def _load_snapshot(self) -> bool:
        for attempt in range(3):  # a generation pruned between reading the manifest and opening it: read again
            manifest = self._read_manifest()
            if manifest is None:
                return False
            key = self._snapshot_key(manifest, create=False)
            if key is None:
                return False
            if self._load_generation(manifest, key[1], last_try=attempt == 2):
                return True
        return False

    def _load_generation(self, manifest: dict, dek: bytes, last_try: bool) -> bool:
        generation = manifest.get("generation")
        folder = self._dir / generation if generation else self._dir  # format 1: files beside the manifest

        def aad(name: str) -> bytes:
            return crypto.aad_of("index", generation, name) if generation else crypto.aad_of("index", name)

        try:
            meta = json.loads(crypto.open_file(dek, folder / "meta.kbf", aad("meta")))
            r = self.c.settings.retrieval
            if meta.get("embedder") != r.embedder_model or meta.get("tokenizer") != r.tokenizer or \
                    meta.get("bm25", bm25_options(r)) != bm25_options(r):
                log.info("index snapshot was built with other settings; rebuilding")
                return False
            from retrieval.dense import FaissIndex

            dense = FaissIndex.from_bytes(crypto.open_file(dek, folder / "dense.kbf", aad("dense")), use_gpu=r.use_gpu)
            dense.defer_rebuilds = True
            bm25 = BM25Index.from_bytes(crypto.open_file(dek, folder / "bm25.kbf", aad("bm25")))
        except FileNotFoundError:
            if last_try:
                log.warning("index snapshot files are missing; rebuilding from the database")
            return False
        except Exception:
            log.warning("index snapshot unreadable; rebuilding from the database", exc_info=True)
            return False
        self._dense, self._bm25 = dense, bm25
        self._collection_of = {int(k): int(v) for k, v in meta["chunks"]}
        self._zh = {int(i) for i in meta.get("zh", [])}
        self._allowed.clear()
        self._watermark = int(meta["watermark"])
        self._last_snapshot = time.monotonic()
        return True

    # --- searching -----------------------------------------------------------------------------
    def __len__(self) -> int:
        self._ensure()
        return len(self._collection_of)

    def allowed_ids(self, collection_ids: set[int] | None) -> set[int] | None:
        """Chunk ids of these collections, memoized until the index changes (a scan per query would cost
        ~10 ms at 100k chunks)."""
        if collection_ids is None:
            return None
        key = frozenset(collection_ids)
        if key not in self._allowed:
            if len(self._allowed) > 64:
                self._allowed.clear()
            self._allowed[key] = {cid for cid, col in self._collection_of.items() if col in key}
        return self._allowed[key]

    def search(self, query: str, k: int, collection_ids: set[int] | None, mode: str | None = None) -> list[SearchHit]:
        """Top-k chunk hits among the given collections (None = all; an empty set finds nothing)."""
        self.refresh()
        if collection_ids is not None and not collection_ids:
            return []
        r = self.c.settings.retrieval
        with self._lock:
            allowed = self.allowed_ids(collection_ids)
            if allowed is not None and not allowed:
                return []
            hits = self._searcher(query, mode).search(query, k, allowed)
        if (mode or r.mode) != "bm25":  # the relevance gate and display use the dense similarity
            missing = [h.chunk_id for h in hits if h.dense_score is None]
            if missing:
                qv = self.c.embedder.embed_query(query)
                scores = self._dense.score(qv, missing)
                hits = [h if h.dense_score is not None else
                        SearchHit(h.chunk_id, h.score, scores.get(h.chunk_id), h.bm25_score) for h in hits]
        return hits

    def _searcher(self, query: str, mode: str | None) -> HybridSearcher:
        r = self.c.settings.retrieval
        alpha = r.convex_alpha if embedder_knows(r, query) else r.cross_language_alpha
        return HybridSearcher(self.c.embedder, self._dense, self._bm25, mode=mode or r.mode, fusion=r.fusion,
                              alpha=alpha, rrf_k=r.rrf_k, candidates=r.candidates,
                              dense_only=self._other_language(query))

    def _other_language(self, query: str):
        """Chunk ids in another language than ``query`` when the embedder reads both (a multilingual model):
        fusion ranks those by similarity alone, since BM25 cannot match across languages. On the
        cross-language set this took hybrid top-1 from 0.00 to the dense figure (docs/benchmarks.md)."""
        r = self.c.settings.retrieval
        if not {"en", "zh"} <= set(r.embedder_languages or ()):
            return ()
        zh = self._zh
        return zh if text_language(query) != "zh" else _Complement(zh)

    def explain(self, query: str, k: int, collection_ids: set[int] | None, mode: str | None = None) -> Explained:
        """What :meth:`search` ranks, with the parts of each score: both signals for every hit whatever the
        mode, and each hit's rank in the dense and in the BM25 candidate list (None: not among them)."""
        self.refresh()
        r = self.c.settings.retrieval
        mode = mode or r.mode
        searcher = self._searcher(query, mode)
        out = Explained(mode, r.fusion, searcher.alpha, r.rrf_k, r.candidates)
        if collection_ids is not None and not collection_ids:
            return out
        with self._lock:
            allowed = self.allowed_ids(collection_ids)
            if allowed is not None and not allowed:
                return out
            cands = searcher.gather(query, allowed, n=max(r.candidates, k))
            out.hits = searcher.fuse(cands, k)
            ids = [h.chunk_id for h in out.hits]
            dense = dict(cands.dense_scores)
            if self._dense is not None and any(i not in dense for i in ids):
                dense.update(self._dense.score(self.c.embedder.embed_query(query), [i for i in ids if i not in dense]))
            bm25 = dict(cands.bm25_scores)
            if any(i not in bm25 for i in ids):
                bm25.update(self._bm25.score(query, [i for i in ids if i not in bm25]))
        out.hits = [SearchHit(h.chunk_id, h.score, dense.get(h.chunk_id), bm25.get(h.chunk_id)) for h in out.hits]
        out.dense_rank = {cid: n for n, (cid, _) in enumerate(cands.dense, 1)}
        out.bm25_rank = {cid: n for n, (cid, _) in enumerate(cands.bm25, 1)}
        return out


@dataclass
class Explained:
    """A ranking with its parts (see SearchIndex.explain)."""

    mode: str
    fusion: str
    alpha: float  # the convex weight of the dense score used for this query (cross-language queries differ)
    rrf_k: int
    candidates: int  # each index's candidate list length
    hits: list[SearchHit] = field(default_factory=list)
    dense_rank: dict[int, int] = field(default_factory=dict)
    bm25_rank: dict[int, int] = field(default_factory=dict)


class _Complement:
    """``x in _Complement(s)`` is ``x not in s``: the chunks that are not Chinese, without listing them."""

    def __init__(self, inner: set[int]) -> None:
        self.inner = inner

    def __contains__(self, item: object) -> bool:
        return item not in self.inner

    def __bool__(self) -> bool:
        return True


def bm25_options(r) -> dict:
    """The Chinese BM25 options of the retrieval settings (part of the index identity)."""
    return {"fold_width": r.fold_width, "user_dict": str(r.user_dict) if r.user_dict else None,
            "oov_bigrams": r.oov_bigrams}


def embedder_knows(r, text: str) -> bool:
    """Whether the embedder understands the language of ``text`` (MiniLM does not read Chinese)."""
    from llm.prompt import detect_language

    # unresolved settings (not through Settings) mean MiniLM's defaults, as retrieval.gate_for assumes
    return detect_language(text) in (r.embedder_languages or ["en"])


def search_terms(text: str) -> list[str]:
    """The terms BM25 indexes for ``text`` (stemmed English words, Chinese words)."""
    return _tokenizer()(text)


def lexical_coverage(query: str, passage: str) -> float:
    """Share of the query's distinct search terms that occur in the passage."""
    terms = set(search_terms(query))
    return len(terms & set(search_terms(passage))) / len(terms) if terms else 0.0


@functools.cache
def _tokenizer():
    from retrieval.tokenize import Tokenizer

    return Tokenizer()


def hydrate(container, s: Session, hits: list[SearchHit]) -> list[Passage]:
    """Open the text of hit chunks and attach their document, collection and position."""
    if not hits:
        return []
    rows = s.execute(select(Chunk, Document, Collection.name).join(Document, Document.id == Chunk.document_id)
                     .join(Collection, Collection.id == Document.collection_id)
                     .where(Chunk.id.in_([h.chunk_id for h in hits]))).all()
    by_id = {ch.id: (ch, doc, cname) for ch, doc, cname in rows}
    out = []
    for h in hits:
        if h.chunk_id not in by_id:  # deleted between search and hydration
            continue
        ch, doc, cname = by_id[h.chunk_id]
        v = container.vault
        dek = v.data_key(s, doc.dek_id)
        text = v.open_text(dek, ch.text_sealed, "chunks", ch.document_id, ch.idx)
        meta = json.loads(v.open_text(dek, ch.meta_sealed, "chunk_meta", ch.document_id, ch.idx)) \
            if ch.meta_sealed else {}
        title = v.open_text(dek, doc.title_sealed, "doc_title", doc.id) if doc.title_sealed else None
        out.append(Passage(ch.id, doc.id, cname, doc.source, title, ch.page, meta.get("sheet"), meta.get("heading"),
                           text, h.score, h.dense_score, h.bm25_score))
    return out


def search(container, caller: Caller, query: str, k: int = 5, collections: set[int] | None = None,
           mode: str | None = None) -> list[Passage]:
    """The chunks a question retrieves from the caller's collections, audited like a question."""
    query = query.strip()
    if not query:
        raise KbError("The search query is empty.")
    allowed = None if caller.collection_ids is None else set(caller.collection_ids)
    if collections is not None:
        allowed = set(collections) if allowed is None else allowed & set(collections)
    hits = container.search_index.search(query, k, allowed, mode=mode)
    with container.sessions.begin() as s:
        passages = hydrate(container, s, hits)
        audit.append(s, container.vault, kind="query", action="search", actor=actor(caller),
                     details={"retrieved": [{"chunk_id": p.chunk_id, "document_id": p.document_id,
                                             "score": round(p.score, 4)} for p in passages], "k": k, "mode": mode},
                     sealed={"question": query})
    return passages


def rebuild_index(container, who: Principal, progress=None) -> int:
    """Recreate the dense and BM25 indexes from the chunks table; returns the chunk count."""
    require_role(who, "admin")
    n = container.search_index.rebuild(progress=progress)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action="index.rebuild", actor=actor(who), details={"chunks": n})
    return n
