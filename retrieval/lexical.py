"""Okapi BM25 over chunk text, keyed by chunk id, updated incrementally.

Postings live in a few immutable CSC-like segments (term -> rows, term frequencies), merged
log-structured as documents arrive, so adding a batch never rewrites everything and a query only
slices the columns of its own terms. Removal marks rows dead; document frequencies are counted over
live rows at query time, and dead rows are dropped when segments merge. Only statistics are kept
(vocabulary, postings, lengths): never the text itself.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import KbError
from retrieval.tokenize import CjkMode, Tokenizer

_FORMAT = "kb-bm25-v1"


@dataclass(frozen=True)
class _Segment:
    """Postings of a range of rows: for term t, rows[indptr[t]:indptr[t+1]] with tfs alongside."""

    indptr: np.ndarray  # int64, len = vocabulary size at build + 1
    rows: np.ndarray  # int32 global row numbers
    tfs: np.ndarray  # float32 term frequencies

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def column(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        if term + 1 >= self.indptr.size:
            return _EMPTY_I32, _EMPTY_F32
        lo, hi = self.indptr[term], self.indptr[term + 1]
        return self.rows[lo:hi], self.tfs[lo:hi]


_EMPTY_I32 = np.zeros(0, dtype=np.int32)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)


def _build_segment(rows: np.ndarray, terms: np.ndarray, tfs: np.ndarray, vocab_size: int) -> _Segment:
    order = np.lexsort((rows, terms))
    terms = terms[order]
    counts = np.bincount(terms, minlength=vocab_size)
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return _Segment(indptr, rows[order].astype(np.int32), tfs[order].astype(np.float32))


def _segment_triples(seg: _Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    terms = np.repeat(np.arange(seg.indptr.size - 1, dtype=np.int64), np.diff(seg.indptr))
    return seg.rows, terms, seg.tfs


class BM25Index:
    """BM25 with in-search ACL filtering. ``search`` cuts the top-k after applying ``allowed``."""

    def __init__(self, k1: float = 0.9, b: float = 0.4, tokenizer: CjkMode = "jieba", stem: bool = True,
                 **chinese: Any) -> None:
        """``chinese``: the Tokenizer's Chinese options (fold_width, user_dict, oov_bigrams)."""
        self.k1 = float(k1)
        self.b = float(b)
        self.tokenize = Tokenizer(cjk=tokenizer, stem=stem, **chinese)
        self._vocab: dict[str, int] = {}
        self._row_ids = np.zeros(0, dtype=np.int64)  # chunk id per row
        self._row_len = np.zeros(0, dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._row_of: dict[int, int] = {}
        self._segments: list[_Segment] = []
        self._live_len_sum = 0.0
        self._lock = threading.RLock()

    # ---- mutation -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._row_of

    def add(self, ids: Iterable[int], texts: Iterable[str]) -> None:
        """Index texts under chunk ids; an id already present is replaced."""
        ids = [int(i) for i in ids]
        texts = list(texts)
        if len(ids) != len(texts):
            raise ValueError(f"add() got {len(ids)} ids but {len(texts)} texts.")
        if len(set(ids)) != len(ids):
            raise ValueError("add() got the same chunk id twice in one batch.")
        bags = [Counter(self.tokenize(t)) for t in texts]
        with self._lock:
            self.remove([i for i in ids if i in self._row_of])
            start = self._row_ids.size
            rows_l: list[int] = []
            terms_l: list[int] = []
            tfs_l: list[int] = []
            lengths = np.zeros(len(ids), dtype=np.float32)
            vocab = self._vocab
            for j, bag in enumerate(bags):
                lengths[j] = sum(bag.values())
                for term, tf in bag.items():
                    tid = vocab.get(term)
                    if tid is None:
                        tid = vocab[term] = len(vocab)
                    terms_l.append(tid)
                    tfs_l.append(tf)
                rows_l.extend([start + j] * len(bag))
            self._row_ids = np.concatenate([self._row_ids, np.asarray(ids, dtype=np.int64)])
            self._row_len = np.concatenate([self._row_len, lengths])
            self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
            for j, cid in enumerate(ids):
                self._row_of[cid] = start + j
            self._live_len_sum += float(lengths.sum())
            if rows_l:
                self._segments.append(
                    _build_segment(
                        np.asarray(rows_l, dtype=np.int64),
                        np.asarray(terms_l, dtype=np.int64),
                        np.asarray(tfs_l, dtype=np.float32),
                        len(vocab),
                    )
                )
                self._merge_small_segments()

    def remove(self, ids: Iterable[int]) -> None:
        """Forget chunk ids (unknown ids are ignored)."""
        with self._lock:
            for cid in ids:
                row = self._row_of.pop(int(cid), None)
                if row is not None:
                    self._alive[row] = False
                    self._live_len_sum -= float(self._row_len[row])
            dead = self._alive.size - len(self._row_of)
            if dead > 1000 and dead > 0.3 * self._alive.size:
                self.compact()

    def _merge_small_segments(self) -> None:
        # Tiered merging: the newest segment absorbs its predecessor while they are of similar size,
        # which keeps O(log n) segments and amortized O(n log n) total merge work.
        segs = self._segments
        while len(segs) > 1 and segs[-2].nnz <= 4 * segs[-1].nnz:
            b = segs.pop()
            a = segs.pop()
            segs.append(self._merge([a, b]))

    def _merge(self, segs: list[_Segment]) -> _Segment:
        parts = [_segment_triples(s) for s in segs]
        rows = np.concatenate([p[0] for p in parts]).astype(np.int64)
        terms = np.concatenate([p[1] for p in parts])
        tfs = np.concatenate([p[2] for p in parts])
        keep = self._alive[rows]
        return _build_segment(rows[keep], terms[keep], tfs[keep], len(self._vocab))

    def compact(self) -> None:
        """Drop dead rows and renumber: one segment afterwards."""
        with self._lock:
            merged = self._merge(self._segments) if self._segments else None
            live = np.flatnonzero(self._alive)
            new_row = np.full(self._alive.size, -1, dtype=np.int64)
            new_row[live] = np.arange(live.size)
            self._row_ids = self._row_ids[live]
            self._row_len = self._row_len[live]
            self._alive = np.ones(live.size, dtype=bool)
            self._row_of = {int(c): i for i, c in enumerate(self._row_ids.tolist())}
            self._segments = []
            if merged is not None and merged.nnz:
                rows, terms, tfs = _segment_triples(merged)
                self._segments = [_build_segment(new_row[rows], terms, tfs, len(self._vocab))]

    # ---- query ----------------------------------------------------------------------------------

    def _scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of every live row matching at least one query term."""
        n_live = len(self._row_of)
        if n_live == 0:
            return _EMPTY_I32.astype(np.int64), _EMPTY_F32
        avgdl = max(self._live_len_sum / n_live, 1e-9)
        q_terms = Counter(t for t in self.tokenize(query) if t in self._vocab)
        all_rows: list[np.ndarray] = []
        all_scores: list[np.ndarray] = []
        for term, qtf in q_terms.items():
            tid = self._vocab[term]
            cols = [s.column(tid) for s in self._segments]
            rows = np.concatenate([c[0] for c in cols])
            tfs = np.concatenate([c[1] for c in cols])
            keep = self._alive[rows]
            rows, tfs = rows[keep], tfs[keep]
            df = rows.size
            if df == 0:
                continue
            idf = np.log1p((n_live - df + 0.5) / (df + 0.5))
            norm = self.k1 * (1.0 - self.b + self.b * self._row_len[rows] / avgdl)
            all_rows.append(rows)
            all_scores.append((qtf * idf) * tfs * (self.k1 + 1.0) / (tfs + norm))
        if not all_rows:
            return _EMPTY_I32.astype(np.int64), _EMPTY_F32
        rows = np.concatenate(all_rows)
        scores = np.concatenate(all_scores)
        if len(all_rows) > 1:
            rows, inverse = np.unique(rows, return_inverse=True)
            scores = np.bincount(inverse, weights=scores).astype(np.float32)
        return rows.astype(np.int64), scores.astype(np.float32)

    def search(self, query: str, k: int, allowed: Collection[int] | None = None) -> list[tuple[int, float]]:
        """Top-k (chunk id, BM25 score), best first, among ``allowed`` ids when given."""
        if k <= 0:
            return []
        with self._lock:
            rows, scores = self._scores(query)
            ids = self._row_ids[rows]
        if allowed is not None:
            keep = np.isin(ids, _as_id_array(allowed))
            ids, scores = ids[keep], scores[keep]
        if ids.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            ids, scores = ids[top], scores[top]
        order = np.lexsort((ids, -scores))  # score desc, then id asc for stable ties
        return [(int(ids[i]), float(scores[i])) for i in order]

    def score(self, query: str, ids: Iterable[int]) -> dict[int, float]:
        """BM25 score of specific chunk ids (0.0 when no term matches; unknown ids are skipped)."""
        with self._lock:
            rows, scores = self._scores(query)
            by_row = dict(zip(rows.tolist(), scores.tolist(), strict=True))
            out = {}
            for cid in ids:
                row = self._row_of.get(int(cid))
                if row is not None:
                    out[int(cid)] = by_row.get(row, 0.0)
        return out

    # ---- persistence (statistics only, no text) -------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize vocabulary, postings and lengths as an .npz (no pickle, no raw text)."""
        with self._lock:
            self.compact()
            seg = self._segments[0] if self._segments else _build_segment(
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), len(self._vocab)
            )
            terms = [""] * len(self._vocab)
            for term, tid in self._vocab.items():
                terms[tid] = term
            meta = {"format": _FORMAT, "k1": self.k1, "b": self.b, "tokenizer": self.tokenize.config()}
            buf = io.BytesIO()
            np.savez(
                buf,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                vocab=np.frombuffer(json.dumps(terms, ensure_ascii=False).encode(), dtype=np.uint8),
                row_ids=self._row_ids,
                row_len=self._row_len,
                indptr=seg.indptr,
                rows=seg.rows,
                tfs=seg.tfs,
            )
            return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> BM25Index:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"unknown format {meta.get('format')!r}")
                terms = json.loads(z["vocab"].tobytes())
                arrays = {name: z[name] for name in ("row_ids", "row_len", "indptr", "rows", "tfs")}
        except (ValueError, KeyError, OSError) as exc:
            raise KbError(
                f"The BM25 index file is unreadable ({exc}). Rebuild it with `kb index rebuild`."
            ) from exc
        tok = meta["tokenizer"]
        chinese = {k: tok[k] for k in ("fold_width", "user_dict", "oov_bigrams") if k in tok}
        index = cls(k1=meta["k1"], b=meta["b"], tokenizer=tok["cjk"], stem=tok["stem"], **chinese)
        index.tokenize.stop_words = bool(tok["stop_words"])
        index._vocab = {t: i for i, t in enumerate(terms)}
        index._row_ids = arrays["row_ids"].astype(np.int64)
        index._row_len = arrays["row_len"].astype(np.float32)
        index._alive = np.ones(index._row_ids.size, dtype=bool)
        index._row_of = {int(c): i for i, c in enumerate(index._row_ids.tolist())}
        index._live_len_sum = float(index._row_len.sum())
        if arrays["rows"].size:
            index._segments = [_Segment(arrays["indptr"].astype(np.int64), arrays["rows"], arrays["tfs"])]
        return index


def _as_id_array(allowed: Collection[int]) -> np.ndarray:
    if isinstance(allowed, np.ndarray):
        return allowed.astype(np.int64, copy=False)
    return np.fromiter(allowed, dtype=np.int64, count=len(allowed))
