"""Sealed cache of answers to frequent questions.

A question asked again is answered from here instead of searching and generating again, when all that
decides its answer is unchanged: the normalised question and conversation, the collections the caller
may read (and asked for), k, the index state (the ``index_events`` watermark the search index has
applied), the generator that would answer (name and weights digest) and the retrieval and answer
settings. All of that goes into one keyed digest (the key ring's HMAC key, so a file name does not
reveal which question was asked); a different grant, a newly indexed or deleted chunk or another model
therefore never meets an old entry.

Entries are files under ``data/cache/answers/<watermark>-<digest>.kbc``, sealed with a data key of the
vault (AES-256-GCM or SM4-GCM, the digest and watermark bound as associated data), so replicas on one
data dir share them and none of the cached text is on disk in the clear. When the index moves past a
watermark every entry of an older one is deleted, so an answer quoting a deleted document does not
outlive it on disk. The cache never decides whether a question is answered: any failure here is a
miss, logged, and the question takes the normal path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app import crypto
from app.services.search import Passage

log = logging.getLogger(__name__)
FORMAT = b"KBAC1\n"
SUFFIX = ".kbc"
KEY_FILE = "key.json"
_TRAILING = re.compile(r"[\s?？.。!！,，;；:：]+$")
# Settings that cannot change an answer (credentials, timeouts, threads) stay out of the key.
_LLM_IGNORED = {"openai_api_key", "openai_timeout", "n_threads", "n_threads_batch", "n_batch",
                "failover_check_seconds", "failover_probe_timeout"}


def normalise(text: str) -> str:
    """The question as the cache compares it: NFKC, case-folded, whitespace collapsed, trailing
    punctuation dropped ("What is X?" and "what  is x" are the same question)."""
    text = " ".join(unicodedata.normalize("NFKC", text).split()).casefold()
    return _TRAILING.sub("", text)


@dataclass(frozen=True)
class CacheKey:
    digest: str
    watermark: int
    model: str | None
    ms: float = 0.0  # time taken to compute it (applying pending index events included)


class AnswerCache:
    """One per process (``container.answer_cache``); files are shared by every process on the data dir."""

    def __init__(self, container):
        self.c = container
        self._lock = threading.Lock()
        self._dek: tuple[str, bytes] | None = None
        self._pruned_watermark: int | None = None

    @property
    def enabled(self) -> bool:
        return self.c.settings.cache.answers

    @property
    def folder(self) -> Path:
        return self.c.settings.answer_cache_dir

    # --- the key ---------------------------------------------------------------------------------
    def key(self, question: str, turns: list, allowed: Collection[int] | None, k: int) -> CacheKey | None:
        """The cache key of this question now (None: the cache is off or the key cannot be computed)."""
        if not self.enabled:
            return None
        t = time.perf_counter()
        try:
            watermark = self.c.search_index.watermark()  # applies pending index events first
            gen = self.c.generator
            member = getattr(gen, "active", None)  # a failover pool: the member that answers next
            answering = member.generator if member is not None else gen
            model = answering.model_name
            s = self.c.settings
            material = {
                "q": normalise(question),
                "history": [[m.role, normalise(m.content)] for m in turns],
                "collections": None if allowed is None else sorted(int(i) for i in allowed),
                "k": int(k),
                "model": [model, answering.model_sha256],
                "retrieval": s.retrieval.model_dump(mode="json"),
                "llm": s.llm.model_dump(mode="json", exclude=_LLM_IGNORED),
            }
            raw = json.dumps(material, sort_keys=True, ensure_ascii=False, default=str).encode()
            return CacheKey(self.c.vault.bytes_hmac(raw), int(watermark), model, (time.perf_counter() - t) * 1000)
        except Exception:
            log.warning("answer cache key failed; answering without the cache", exc_info=True)
            return None

    def _path(self, key: CacheKey) -> Path:
        return self.folder / f"{key.watermark}-{key.digest}{SUFFIX}"

    @staticmethod
    def _aad(key: CacheKey) -> bytes:
        return crypto.aad_of("answer-cache", key.watermark, key.digest)

    # --- the data key ----------------------------------------------------------------------------
    def _data_key(self, dek_id: str | None = None) -> tuple[str, bytes]:
        """The key that seals new entries (or opens one sealed under ``dek_id``). Its id is kept in
        key.json so other processes seal under the same one; one made by a racing process still opens."""
        if dek_id is not None:
            if self._dek is not None and self._dek[0] == dek_id:
                return self._dek
            with self.c.sessions() as s:
                return dek_id, self.c.vault.data_key(s, dek_id)
        with self._lock:
            if self._dek is not None:
                return self._dek
            path = self.folder / KEY_FILE
            try:
                named = json.loads(path.read_text())["dek_id"]
                with self.c.sessions() as s:
                    self._dek = named, self.c.vault.data_key(s, named)
                return self._dek
            except (OSError, ValueError, KeyError, TypeError):
                pass
            except Exception:  # the named key is gone (a restored or rotated database): make another
                log.info("answer cache key %s is unreadable; making a new one", path)
            with self.c.sessions.begin() as s:
                self._dek = self.c.vault.new_data_key_named(s, "answers-")
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{KEY_FILE}.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps({"dek_id": self._dek[0]}))
            os.replace(tmp, path)
            return self._dek

    # --- reading and writing ---------------------------------------------------------------------
    def get(self, key: CacheKey) -> dict[str, Any] | None:
        """The cached entry for ``key``, or None (missing, expired, unreadable)."""
        self._prune_other_watermarks(key.watermark)
        path = self._path(key)
        try:
            blob = path.read_bytes()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            log.warning("answer cache entry %s unreadable", path.name, exc_info=True)
            return None
        if age > self.c.settings.cache.ttl_s:
            _unlink(path)
            return None
        try:
            if not blob.startswith(FORMAT):
                raise crypto.IntegrityError("not an answer cache entry")
            dek_id, sealed = blob[len(FORMAT):].split(b"\n", 1)
            _, dek = self._data_key(dek_id.decode())
            entry = json.loads(crypto.open_sealed(dek, sealed, self._aad(key)))
        except Exception:
            log.warning("answer cache entry %s does not open; removing it", path.name, exc_info=True)
            _unlink(path)
            return None
        return entry if entry.get("digest") == key.digest else None

    def put(self, key: CacheKey, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        dek_id, dek = self._data_key()
        data = json.dumps({**entry, "digest": key.digest, "watermark": key.watermark}, ensure_ascii=False).encode()
        sealed = crypto.seal(self.c.vault.cipher_for(dek), dek, data, self._aad(key))
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(FORMAT + dek_id.encode() + b"\n" + sealed)
        os.replace(tmp, path)
        self._trim()

    def clear(self) -> int:
        """Remove every cached answer; returns how many."""
        n = 0
        for p in self._entries():
            n += _unlink(p)
        return n

    def __len__(self) -> int:
        return len(self._entries())

    def _entries(self) -> list[Path]:
        try:
            return [p for p in self.folder.iterdir() if p.suffix == SUFFIX and not p.name.startswith(".")]
        except FileNotFoundError:
            return []

    def _prune_other_watermarks(self, watermark: int) -> None:
        """Delete entries made against another index state (once per watermark a process sees)."""
        if self._pruned_watermark == watermark:
            return
        self._pruned_watermark = watermark
        prefix = f"{watermark}-"
        for p in self._entries():
            if not p.name.startswith(prefix):
                _unlink(p)

    def _trim(self) -> None:
        entries = self._entries()
        excess = len(entries) - self.c.settings.cache.max_entries
        if excess <= 0:
            return
        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0
        for p in sorted(entries, key=mtime)[:excess]:
            _unlink(p)


def _unlink(p: Path) -> int:
    try:
        p.unlink()
        return 1
    except FileNotFoundError:  # another process removed it first
        return 0


# --- what qa.ask calls ---------------------------------------------------------------------------
def key_for(container, question: str, turns: list, allowed: Collection[int] | None, k: int) -> CacheKey | None:
    return container.answer_cache.key(question, turns, allowed, k)


def fill(container, key: CacheKey | None, res) -> bool:
    """On a hit, fill ``res`` (a qa.AskResult) with the cached answer and return True."""
    if key is None:
        return False
    t = time.perf_counter()
    try:
        entry = container.answer_cache.get(key)
        if entry is None:
            return False
        from app.services.qa import Citation

        res.answer, res.reasoning = entry["answer"], entry["reasoning"]
        res.refused, res.refusal_reason = entry["refused"], entry["refusal_reason"]
        res.citations = [Citation(**c) for c in entry["citations"]]
        res.invalid_citations, res.attributed = entry["invalid_citations"], entry["attributed"]
        res.passages = [Passage(**p) for p in entry["passages"]]
        res.model, res.model_sha256 = entry["model"], entry["model_sha256"]
        res.condensed, res.condense_method = entry["condensed"], entry["condense_method"]
        res.finish_reason = entry.get("finish_reason")
        res.cached_from = entry["audit_seq"]
        res.tokens = 0  # nothing was generated for this answer
    except Exception:
        log.warning("answer cache entry unusable; answering without the cache", exc_info=True)
        return False
    res.timings["cache_ms"] = round(key.ms + (time.perf_counter() - t) * 1000, 2)  # key + lookup + opening
    return True


def store(container, key: CacheKey | None, res) -> None:
    """Cache a finished answer (an answer, or a refusal by the relevance gate) for its key."""
    if key is None or res.audit_seq is None or res.cached_from is not None or not res.answer:
        return
    if not res.refused and res.model != key.model:  # a failover pool answered with another member
        return
    if getattr(res, "finish_reason", None) in ("repetition", "echo"):  # a cut loop, the question echoed: retry
        return
    try:
        container.answer_cache.put(key, {
            "answer": res.answer, "reasoning": res.reasoning, "refused": res.refused,
            "refusal_reason": res.refusal_reason, "citations": [asdict(c) for c in res.citations],
            "invalid_citations": res.invalid_citations, "attributed": res.attributed,
            "passages": [asdict(p) for p in res.passages], "model": res.model, "model_sha256": res.model_sha256,
            "condensed": res.condensed, "condense_method": res.condense_method, "audit_seq": res.audit_seq,
            "finish_reason": getattr(res, "finish_reason", None),
            "created": time.time(),
        })
    except Exception:
        log.warning("caching the answer failed", exc_info=True)


def has_answer(container, caller, question: str, k: int | None = None, collections: set[int] | None = None,
               history=None) -> bool:
    """Whether qa.ask would answer this from the cache now (the API lets such a question past a full
    generator queue: it needs no generator). Computed as qa.ask computes its key."""
    if not container.answer_cache.enabled or not isinstance(question, str) or not question.strip():
        return False
    from app.services.qa import parse_history

    try:
        turns = parse_history(history)
    except Exception:  # invalid history: qa.ask says why
        return False
    allowed = caller.collection_ids
    if collections is not None:
        allowed = frozenset(collections if allowed is None else set(allowed) & set(collections))
    key = key_for(container, question.strip(), turns, allowed, k or container.settings.retrieval.top_k)
    return key is not None and container.answer_cache.get(key) is not None
