"""Process claimed documents: parse -> scrub PII -> chunk -> embed -> write, a batch at a time.

Chunks, their vectors (both sealed), the index event and the document's final status are written
in ONE transaction together with the job's completion, so a worker killed at any point leaves
either nothing or the whole document, never half of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import delete, insert, select, update

from app import blobs, foreground
from app.db import lock_until_commit
from app.models import Chunk, Collection, Document, IndexEvent
from ingest import queue
from ingest.chunking import chunk_sections
from ingest.options import OcrDeferred, ParseOptions
from ingest.parsers import parse
from ingest.types import DocStatus, IngestContext, IngestError, ParsedDocument, Section

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage and what went through, for progress reports and benchmarks."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    documents: int = 0
    chunks: int = 0
    characters: int = 0

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, started: float) -> float:
        t = time.perf_counter()
        with self._lock:  # the embedding stage reports from its own thread
            self.seconds[stage] += t - started
        return t

    def add_seconds(self, stage: str, seconds: float) -> None:
        if seconds:
            with self._lock:
                self.seconds[stage] += seconds


@dataclass
class Prepared:
    """A parsed, scrubbed and chunked document waiting for its vectors."""

    claim: queue.Claim
    doc_id: int
    collection_id: int
    source: str
    dek: bytes
    title: str | None
    format: str
    content_hmac: str
    pii_found: int
    chunks: list
    note: str | None = None  # the status reason of an indexed document (what OCR read)


@dataclass
class Batch:
    """Claimed jobs after parsing: documents waiting for vectors, and the ones already settled."""

    claims: list[queue.Claim]  # the jobs this batch settles (not the deferred ones)
    ready: list[Prepared]
    results: dict[int, DocStatus | None]
    deferred: list[tuple[queue.Claim, int]] = field(default_factory=list)  # (job, pages) left to the OCR lane


InFlight = dict[tuple[int, str], tuple[str, int]]  # (collection, content HMAC) -> (source, document id)


def prepare_batch(container: IngestContext, claims: list[queue.Claim], times: StageTimes,
                  in_flight: InFlight, passwords: Mapping[int, str] | None = None, *, defer_ocr: bool = False,
                  preloaded: list[Loaded] | None = None) -> Batch:
    """Parse, scrub and chunk each claimed document; files that cannot be indexed are settled here.
    Scrubbing runs once over the whole batch (spaCy is much faster on many texts at once).
    ``in_flight`` holds the texts of documents prepared but not yet written (this batch and the one
    being embedded), so a duplicate is caught even before its twin is in the database.
    ``passwords`` (document id -> password) open encrypted files; only an in-process retry passes them.
    With ``defer_ocr`` a document that needs OCR is not read here but listed in ``Batch.deferred``
    (the worker reads it in its OCR lane, ``read_scan``); ``preloaded`` are documents that lane read,
    joining this batch for scrubbing, chunking, embedding and writing."""
    batch = Batch([], [], {})
    loaded: list[Loaded] = list(preloaded or [])
    for claim in claims:
        password = (passwords or {}).get(claim.document_id)

        def step(claim=claim, password=password) -> Loaded | None:
            return load(container, claim, times, in_flight, password, defer_ocr=defer_ocr,
                        progress=ocr_progress(container, claim))

        try:
            item = _guard(container, claim, step)
        except OcrDeferred as deferred:
            batch.deferred.append((claim, deferred.pages))
            continue
        batch.claims.append(claim)
        if isinstance(item, Loaded):
            loaded.append(item)
        else:
            batch.results[claim.job_id] = item
    batch.claims.extend(item.claim for item in preloaded or [])
    for item, scrubbed in zip(loaded, scrub_all(container, loaded, times), strict=True):
        prep = _guard(container, item.claim, lambda item=item, scrubbed=scrubbed: chunk(container, item, scrubbed,
                                                                                         times))
        if isinstance(prep, Prepared):
            batch.ready.append(prep)
        else:
            batch.results[item.claim.job_id] = prep
    return batch


def read_scan(container: IngestContext, claim: queue.Claim, times: StageTimes,
              in_flight: InFlight) -> Loaded | DocStatus | None:
    """Parse a document that needs OCR (the worker's OCR lane, beside the text documents). Returns it
    loaded, or the terminal status it ended with (too large, empty, broken), or None (taken over)."""
    return _guard(container, claim, lambda: load(container, claim, times, in_flight,
                                                 progress=ocr_progress(container, claim)))


def mark_ocr_waiting(container: IngestContext, claim: queue.Claim, pages: int) -> None:
    """Show in the queue that the document waits for (or is in) OCR, before its first page is read."""
    _set_progress(container, claim, f"OCR: 0 of {pages} page{'s' if pages != 1 else ''} read")


def ocr_progress(container: IngestContext, claim: queue.Claim):
    """The callback a parse calls after each OCR page: the document shows ``processing`` with
    'OCR: 3 of 40 pages read' as its reason, so ``kb docs list`` and the Documents page show progress."""
    def report(done: int, total: int) -> None:
        _set_progress(container, claim, f"OCR: {done} of {total} page{'s' if total != 1 else ''} read")
    return report


def _set_progress(container: IngestContext, claim: queue.Claim, reason: str) -> None:
    try:
        with container.sessions() as s:  # only while the document is still on its way (never over a result)
            s.execute(update(Document).where(Document.id == claim.document_id,
                                             Document.status.in_((DocStatus.queued, DocStatus.processing)))
                      .values(status=DocStatus.processing, reason=reason))
            s.commit()
    except Exception:  # progress is a courtesy: a busy database must not fail the document
        log.warning("could not record OCR progress of document %s", claim.document_id, exc_info=True)


def embed_batch(container: IngestContext, batch: Batch, times: StageTimes) -> np.ndarray | None:
    """Vectors for every chunk of the batch, or None if the model failed (then documents go one by one).
    Touches no database, so it can run in a thread beside the next batch's preparation."""
    if not batch.ready:
        return None
    t = time.perf_counter()
    texts = [ch.text for p in batch.ready for ch in p.chunks]
    cfg = container.settings.ingest
    step = max(1, cfg.embed_sub_batch)
    lock = foreground.lock_path(container.settings.models_dir)
    try:
        parts = []
        for i in range(0, len(texts), step):
            times.add_seconds("yield_to_answers", foreground.wait_while_busy(lock, cfg.yield_to_answers_s))
            parts.append(container.embedder.embed_passages(texts[i:i + step]))
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else container.embedder.embed_passages([])
    except Exception as exc:
        log.warning("batch embedding failed (%s); retrying documents one by one", exc)
        return None
    finally:
        times.add("embed", t)


def write_batch(container: IngestContext, batch: Batch, vectors: np.ndarray | None,
                times: StageTimes) -> list[DocStatus | None]:
    """Write each prepared document in its own transaction; statuses in the order of the claims."""
    t = time.perf_counter()
    offset = 0
    for prep in batch.ready:
        vecs = None if vectors is None else vectors[offset:offset + len(prep.chunks)]
        batch.results[prep.claim.job_id] = _guard(container, prep.claim,
                                                  lambda prep=prep, vecs=vecs: write(container, prep, vecs, times))
        offset += len(prep.chunks)
    times.add("write", t)
    return [batch.results[c.job_id] for c in batch.claims]


def _guard(c: IngestContext, claim: queue.Claim, step):
    """Run a step; turn a problem with the file into its terminal status, never into a crash."""
    try:
        return step()
    except OcrDeferred:  # not a result: the caller hands the document to the OCR lane
        raise
    except queue.LeaseLost:
        log.warning("job %s was taken over by another worker; dropping our work", claim.job_id)
        return None
    except IngestError as err:
        return _terminal(c, claim, err.status, err.reason)
    except Exception as exc:  # one bad file never stops the batch
        log.exception("document %s failed", claim.document_id)
        return _terminal(c, claim, DocStatus.failed, _short_reason(exc))


@dataclass
class Loaded:
    """A claimed document after parsing and the duplicate check, before scrubbing."""

    claim: queue.Claim
    doc_id: int
    collection_id: int
    source: str
    dek: bytes
    parsed: ParsedDocument
    content_hmac: str
    pii_policy: str = "all"  # its collection's (app.accounts.PII_POLICIES)


def load(container: IngestContext, claim: queue.Claim, times: StageTimes, in_flight: InFlight,
         password: str | None = None, *, defer_ocr: bool = False, progress=None) -> Loaded | None:
    """Open the sealed original, parse it and check for duplicates. Raises IngestError for files that
    cannot be indexed; None if the document was deleted while queued."""
    c = container
    with c.sessions() as s:
        doc = s.execute(select(Document.source, Document.collection_id, Document.blob_name, Document.dek_id,
                               Collection.pii).join(Collection, Collection.id == Document.collection_id)
                        .where(Document.id == claim.document_id)).first()
        if doc is None:  # deleted while queued
            queue.complete(s, claim)
            s.commit()
            return None
        if claim.attempts > c.settings.ingest.max_attempts:
            raise IngestError(DocStatus.failed,
                              f"processing stopped the worker {claim.attempts - 1} times; check the file")
        dek = c.vault.data_key(s, doc.dek_id)
        source, doc_id, collection_id, blob_name = doc.source, claim.document_id, doc.collection_id, doc.blob_name
    t = time.perf_counter()
    data = blobs.load(c.settings.blobs_dir, dek, doc_id, blob_name or "")
    parsed = parse(data, source, ParseOptions.from_settings(c.settings.ingest, password, defer_ocr=defer_ocr,
                                                            progress=progress))
    times.add("parse", t)
    content_hmac = c.vault.content_hmac(parsed.text)
    with c.sessions() as s:
        _refuse_duplicate(s, collection_id, content_hmac, source)
    twin = in_flight.setdefault((collection_id, content_hmac), (source, doc_id))
    if twin[0] != source:
        raise IngestError(DocStatus.duplicate, f"same text as {twin[0]} (document {twin[1]})")
    return Loaded(claim, doc_id, collection_id, source, dek, parsed, content_hmac, doc.pii)


Scrubbed = tuple[list[Section], int] | Exception  # sections and PII found, or what broke the scrubber


def scrub_all(c: IngestContext, items: list[Loaded], times: StageTimes) -> list[Scrubbed]:
    """Scrub every section of every document in one call; if that fails, document by document, so a
    text that breaks the scrubber fails only its own document."""
    t = time.perf_counter()
    try:
        return _scrub_docs(c, items)
    except Exception:
        log.warning("scrubbing the batch failed; scrubbing its documents one by one", exc_info=True)
        out: list[Scrubbed] = []
        for item in items:
            try:
                out.extend(_scrub_docs(c, [item]))
            except Exception as exc:
                out.append(exc)
        return out
    finally:
        times.add("scrub", t)


def _scrub_docs(c: IngestContext, items: list[Loaded]) -> list[Scrubbed]:
    if not c.settings.pii.enabled:
        return [(item.parsed.sections, 0) for item in items]
    out: dict[int, Scrubbed] = {}
    for policy in dict.fromkeys(item.pii_policy for item in items):  # one batch per collection policy
        group = [(i, item) for i, item in enumerate(items) if item.pii_policy == policy]
        results = iter(c.scrubber_for(policy).scrub_many(
            [sec.text for _, item in group for sec in item.parsed.sections]))
        for i, item in group:
            sections, found = [], 0
            for sec in item.parsed.sections:
                res = next(results)
                found += len(res.entities)
                sections.append(Section(res.text, sec.page, sec.sheet, sec.heading))
            out[i] = (sections, found)
    return [out[i] for i in range(len(items))]


def chunk(container: IngestContext, item: Loaded, scrubbed: Scrubbed, times: StageTimes) -> Prepared:
    if isinstance(scrubbed, Exception):
        raise scrubbed
    sections, pii_found = scrubbed
    t = time.perf_counter()
    cfg = container.settings.ingest
    chunks = chunk_sections(sections, container.embedder.token_spans, cfg.chunk_tokens, cfg.chunk_overlap,
                            title=item.parsed.title)
    if not chunks:
        raise IngestError(DocStatus.empty, "no text left after parsing")
    times.add("chunk", t)
    times.characters += sum(len(x.text) for x in sections)
    return Prepared(item.claim, item.doc_id, item.collection_id, item.source, item.dek, item.parsed.title,
                    item.parsed.format, item.content_hmac, pii_found, chunks, item.parsed.metadata.get("ocr"))


def write(c: IngestContext, prep: Prepared, vectors: np.ndarray | None, times: StageTimes) -> DocStatus:
    """Chunks, vectors, index event, final status and job completion: one transaction.
    Without ``vectors`` (the batch's embedding failed) the document is embedded on its own first."""
    if vectors is None:
        vectors = c.embedder.embed_passages([ch.text for ch in prep.chunks])
    doc_id, dek = prep.doc_id, prep.dek
    rows = [  # sealed before the transaction, so its locks are held only for the writes
        {"document_id": doc_id, "collection_id": prep.collection_id, "idx": ch.idx,
         "text_sealed": c.vault.seal(dek, ch.text, "chunks", doc_id, ch.idx),
         "vector_sealed": c.vault.seal(dek, np.asarray(vec, dtype="<f4").tobytes(), "vectors", doc_id, ch.idx),
         "page": ch.page, "n_tokens": ch.n_tokens,
         "meta_sealed": c.vault.seal(dek, json.dumps({"heading": ch.heading, "sheet": ch.sheet}), "chunk_meta",
                                     doc_id, ch.idx) if ch.heading or ch.sheet else None}
        for ch, vec in zip(prep.chunks, vectors, strict=True)
    ]
    title = c.vault.seal(dek, prep.title, "doc_title", doc_id) if prep.title else None
    with c.sessions() as s:
        # Checked again under a lock: another worker may have written a twin since this one was loaded.
        # Writers of one text in one collection wait for each other; a hash clash only waits too.
        lock_until_commit(s, prep.collection_id, int(prep.content_hmac[:8], 16) - 2**31)
        _refuse_duplicate(s, prep.collection_id, prep.content_hmac, prep.source)
        # One multi-row INSERT ... RETURNING (bulk, not one ORM object per chunk).
        ids = list(s.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), rows))
        s.execute(insert(IndexEvent).values(op="add", document_id=doc_id, chunk_ids=ids))
        _finish(c, s, prep.claim, doc_id, DocStatus.indexed, prep.note, title_sealed=title, format=prep.format,
                content_hmac=prep.content_hmac, n_chunks=len(ids), pii_found=prep.pii_found)
        s.commit()
    times.documents += 1
    times.chunks += len(rows)
    return DocStatus.indexed


def _refuse_duplicate(s, collection_id: int, content_hmac: str, source: str) -> None:
    """Raise if another source in the collection already has this text indexed."""
    dup = s.execute(select(Document.id, Document.source).where(
        Document.collection_id == collection_id, Document.content_hmac == content_hmac,
        Document.status == DocStatus.indexed, Document.current.is_(True), Document.source != source).limit(1)).first()
    if dup is not None:
        raise IngestError(DocStatus.duplicate, f"same text as {dup.source} (document {dup.id})")


def _terminal(c: IngestContext, claim: queue.Claim, status: DocStatus, reason: str) -> DocStatus | None:
    try:
        with c.sessions() as s:
            _finish(c, s, claim, claim.document_id, status, reason)
            s.commit()
        return status
    except queue.LeaseLost:
        return None


def _finish(c: IngestContext, s, claim: queue.Claim, doc_id: int, status: DocStatus, reason: str | None,
            **fields) -> None:
    """Set the final status, retire older versions of the same source if this one indexed, end the job."""
    queue.complete(s, claim)
    doc = s.execute(select(Document.collection_id, Document.source).where(Document.id == doc_id)).first()
    if doc is None:
        return
    values = {"status": status, "reason": reason, **fields}
    if status == DocStatus.indexed or not _has_current(s, doc_id, doc.collection_id, doc.source):
        old = s.execute(select(Document.id, Document.blob_name).where(
            Document.collection_id == doc.collection_id, Document.source == doc.source, Document.id != doc_id,
            Document.current.is_(True))).all()
        for old_id, blob_name in old:
            remove_chunks(s, old_id)
            blobs.delete(c.settings.blobs_dir, blob_name)
        if old:
            s.execute(update(Document).where(Document.id.in_([o.id for o in old]))
                      .values(current=False, blob_name=None))
        values["current"] = True
    s.execute(update(Document).where(Document.id == doc_id).values(**values))


def _has_current(s, doc_id: int, collection_id: int, source: str) -> bool:
    return s.scalar(select(Document.id).where(
        Document.collection_id == collection_id, Document.source == source, Document.id != doc_id,
        Document.current.is_(True), Document.status == DocStatus.indexed).limit(1)) is not None


def remove_chunks(s, doc_id: int) -> int:
    ids = list(s.scalars(select(Chunk.id).where(Chunk.document_id == doc_id)))
    if ids:
        s.execute(delete(Chunk).where(Chunk.document_id == doc_id))
        s.add(IndexEvent(op="remove", document_id=doc_id, chunk_ids=ids))
        s.execute(update(Document).where(Document.id == doc_id).values(n_chunks=0))
    return len(ids)


def _short_reason(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300] if msg else type(exc).__name__
