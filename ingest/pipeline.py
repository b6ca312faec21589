"""Process one queued document: parse -> scrub PII -> chunk -> embed -> write, in that order.

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
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import delete, select, update

from app import blobs
from app.container import Container
from app.models import Chunk, Document, IndexEvent
from ingest import queue
from ingest.chunking import chunk_sections
from ingest.parsers import parse
from ingest.types import DocStatus, IngestError, Section

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


@dataclass
class Prepared:
    """A parsed, scrubbed and chunked document waiting for its vectors."""

    claim: queue.Claim
    doc_id: int
    collection_id: int
    dek: bytes
    title: str | None
    format: str
    content_hmac: str
    pii_found: int
    chunks: list


def process(container: Container, claim: queue.Claim, times: StageTimes | None = None) -> DocStatus | None:
    """Run one claimed job to a terminal status. Returns None if another worker took the job over."""
    return process_batch(container, [claim], times)[0]


def process_batch(container: Container, claims: list[queue.Claim],
                  times: StageTimes | None = None) -> list[DocStatus | None]:
    """Run claimed jobs to terminal statuses, embedding all their chunks in one batch (small documents
    would otherwise each pay a whole model call). Each document is still written in its own transaction."""
    times = times if times is not None else StageTimes()
    batch = prepare_batch(container, claims, times)
    return write_batch(container, batch, embed_batch(container, batch, times), times)


@dataclass
class Batch:
    """Claimed jobs after parsing: documents waiting for vectors, and the ones already settled."""

    claims: list[queue.Claim]
    ready: list[Prepared]
    results: dict[int, DocStatus | None]


def prepare_batch(container: Container, claims: list[queue.Claim], times: StageTimes) -> Batch:
    """Parse, scrub and chunk each claimed document; files that cannot be indexed are settled here.
    Ends by renewing the leases of the documents that go on to be embedded."""
    batch = Batch(claims, [], {})
    lease = container.settings.ingest.lease_seconds
    renewed = time.monotonic()
    for i, claim in enumerate(claims):
        if time.monotonic() - renewed > lease / 3:  # large files: keep the rest of the batch ours
            _renew_all(container, claims[i:])
            renewed = time.monotonic()
        prep = _guard(container, claim, lambda claim=claim: prepare(container, claim, times))
        if isinstance(prep, Prepared):
            batch.ready.append(prep)
        else:
            batch.results[claim.job_id] = prep
    try:
        with container.sessions() as s:
            for prep in batch.ready:
                queue.renew(s, prep.claim, lease)
    except queue.LeaseLost:
        _renew_all(container, [p.claim for p in batch.ready])  # write() drops the ones that are lost
    return batch


def embed_batch(container: Container, batch: Batch, times: StageTimes) -> np.ndarray | None:
    """Vectors for every chunk of the batch, or None if the model failed (then documents go one by one).
    Touches no database, so it can run in a thread beside the next batch's preparation."""
    if not batch.ready:
        return None
    t = time.perf_counter()
    try:
        return container.embedder.embed_passages([ch.text for p in batch.ready for ch in p.chunks])
    except Exception as exc:
        log.warning("batch embedding failed (%s); retrying documents one by one", exc)
        return None
    finally:
        times.add("embed", t)


def write_batch(container: Container, batch: Batch, vectors: np.ndarray | None,
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


def _renew_all(container: Container, claims: list[queue.Claim]) -> None:
    for claim in claims:
        try:
            with container.sessions() as s:
                queue.renew(s, claim, container.settings.ingest.lease_seconds)
        except queue.LeaseLost:
            pass  # that document will be dropped when we try to finish it


def _embed_one(container: Container, prep: Prepared) -> np.ndarray:
    with container.sessions() as s:
        queue.renew(s, prep.claim, container.settings.ingest.lease_seconds)
    return container.embedder.embed_passages([ch.text for ch in prep.chunks])


def _guard(c: Container, claim: queue.Claim, step):
    """Run a step; turn a problem with the file into its terminal status, never into a crash."""
    try:
        return step()
    except queue.LeaseLost:
        log.warning("job %s was taken over by another worker; dropping our work", claim.job_id)
        return None
    except IngestError as err:
        return _terminal(c, claim, err.status, err.reason)
    except Exception as exc:  # one bad file never stops the batch
        log.exception("document %s failed", claim.document_id)
        return _terminal(c, claim, DocStatus.failed, _short_reason(exc))


def prepare(container: Container, claim: queue.Claim, times: StageTimes) -> Prepared | None:
    """Parse, check for duplicates, scrub and chunk. Raises IngestError for files that cannot be indexed."""
    c, s_ing = container, container.settings.ingest
    with c.sessions() as s:
        doc = s.get(Document, claim.document_id)
        if doc is None:  # deleted while queued
            queue.complete(s, claim)
            s.commit()
            return None
        if claim.attempts > s_ing.max_attempts:
            raise IngestError(DocStatus.failed,
                              f"processing stopped the worker {claim.attempts - 1} times; check the file")
        dek = c.vault.data_key(s, doc.dek_id)
        source, doc_id, collection_id, blob_name = doc.source, doc.id, doc.collection_id, doc.blob_name
    t = time.perf_counter()
    data = blobs.load(c.settings.blobs_dir, dek, doc_id, blob_name or "")
    parsed = parse(data, source)
    t = times.add("parse", t)
    content_hmac = c.vault.content_hmac(parsed.text)
    with c.sessions() as s:
        dup = _duplicate_of(s, collection_id, content_hmac, source)
    if dup is not None:
        raise IngestError(DocStatus.duplicate, f"same text as {dup.source} (document {dup.id})")
    scrubbed, pii_found = _scrub(c, parsed.sections)
    t = times.add("scrub", t)
    chunks = chunk_sections(scrubbed, c.embedder.token_spans, s_ing.chunk_tokens, s_ing.chunk_overlap,
                            title=parsed.title)
    if not chunks:
        raise IngestError(DocStatus.empty, "no text left after parsing")
    times.add("chunk", t)
    times.characters += sum(len(x.text) for x in scrubbed)
    return Prepared(claim, doc_id, collection_id, dek, parsed.title, parsed.format, content_hmac, pii_found, chunks)


def write(c: Container, prep: Prepared, vectors: np.ndarray | None, times: StageTimes) -> DocStatus:
    """Chunks, vectors, index event, final status and job completion: one transaction.
    Without ``vectors`` (the batch's embedding failed) the document is embedded on its own first."""
    if vectors is None:
        vectors = _embed_one(c, prep)
    doc_id, dek = prep.doc_id, prep.dek
    with c.sessions() as s:
        rows = [
            Chunk(document_id=doc_id, collection_id=prep.collection_id, idx=ch.idx,
                  text_sealed=c.vault.seal(dek, ch.text, "chunks", doc_id, ch.idx),
                  vector_sealed=c.vault.seal(dek, np.asarray(vec, dtype="<f4").tobytes(), "vectors", doc_id,
                                             ch.idx),
                  page=ch.page, n_tokens=ch.n_tokens,
                  meta_sealed=c.vault.seal(dek, json.dumps({"heading": ch.heading, "sheet": ch.sheet}),
                                           "chunk_meta", doc_id, ch.idx) if ch.heading or ch.sheet else None)
            for ch, vec in zip(prep.chunks, vectors, strict=True)
        ]
        s.add_all(rows)
        s.flush()
        s.add(IndexEvent(op="add", document_id=doc_id, chunk_ids=[r.id for r in rows]))
        title = c.vault.seal(dek, prep.title, "doc_title", doc_id) if prep.title else None
        _finish(c, s, prep.claim, doc_id, DocStatus.indexed, None, title_sealed=title, fmt=prep.format,
                content_hmac=prep.content_hmac, n_chunks=len(rows), pii_found=prep.pii_found)
        s.commit()
    times.documents += 1
    times.chunks += len(rows)
    return DocStatus.indexed


def _scrub(c: Container, sections: list[Section]) -> tuple[list[Section], int]:
    if not c.settings.pii.enabled:
        return sections, 0
    out, found = [], 0
    for sec in sections:
        res = c.scrubber.scrub(sec.text)
        found += len(res.entities)
        out.append(Section(res.text, sec.page, sec.sheet, sec.heading))
    return out, found


def _duplicate_of(s, collection_id: int, content_hmac: str, source: str) -> Document | None:
    return s.scalar(select(Document).where(
        Document.collection_id == collection_id, Document.content_hmac == content_hmac,
        Document.status == DocStatus.indexed, Document.current.is_(True), Document.source != source).limit(1))


def _terminal(c: Container, claim: queue.Claim, status: DocStatus, reason: str) -> DocStatus | None:
    try:
        with c.sessions() as s:
            _finish(c, s, claim, claim.document_id, status, reason)
            s.commit()
        return status
    except queue.LeaseLost:
        return None


def _finish(c: Container, s, claim: queue.Claim, doc_id: int, status: DocStatus, reason: str | None,
            **fields) -> None:
    """Set the final status, retire older versions of the same source if this one indexed, end the job."""
    queue.complete(s, claim)
    doc = s.get(Document, doc_id)
    if doc is None:
        return
    doc.status, doc.reason = status, reason
    for k, v in fields.items():
        setattr(doc, "format" if k == "fmt" else k, v)
    if status == DocStatus.indexed or not _has_current(s, doc):
        for old in s.scalars(select(Document).where(
                Document.collection_id == doc.collection_id, Document.source == doc.source,
                Document.id != doc.id, Document.current.is_(True))):
            remove_chunks(s, old.id)
            old.current = False
            blobs.delete(c.settings.blobs_dir, old.blob_name)
            old.blob_name = None
        doc.current = True


def _has_current(s, doc: Document) -> bool:
    return s.scalar(select(Document.id).where(
        Document.collection_id == doc.collection_id, Document.source == doc.source, Document.id != doc.id,
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
