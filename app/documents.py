"""Document administration: list, show, delete, retry. Plain views out; sessions passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import blobs
from app.errors import KbError, NotFound
from app.models import Chunk, Collection, Document
from ingest import queue
from ingest.pipeline import remove_chunks
from ingest.types import DocStatus


@dataclass(frozen=True)
class DocView:
    id: int
    collection: str
    source: str
    version: int
    status: str
    reason: str | None
    format: str | None
    size: int
    n_chunks: int
    pii_found: int
    uploaded_by: str | None
    created_at: datetime
    updated_at: datetime


def _view(d: Document, collection: str) -> DocView:
    return DocView(d.id, collection, d.source, d.version, d.status, d.reason, d.format, d.size,
                   d.n_chunks, d.pii_found, d.uploaded_by, d.created_at, d.updated_at)


def _latest_ids():
    """Ids of the newest version of every (collection, source)."""
    latest = select(Document.collection_id, Document.source, func.max(Document.version).label("v")) \
        .group_by(Document.collection_id, Document.source).subquery()
    return select(Document.id).join(latest, (Document.collection_id == latest.c.collection_id)
                                    & (Document.source == latest.c.source) & (Document.version == latest.c.v))


def list_documents(s: Session, collection: str | None = None, status: str | None = None, name: str | None = None,
                   ids: list[int] | None = None, limit: int | None = None) -> list[DocView]:
    q = select(Document, Collection.name).join(Collection, Collection.id == Document.collection_id)
    q = q.where(Document.id.in_(ids)) if ids is not None else q.where(Document.id.in_(_latest_ids()))
    if collection:
        q = q.where(Collection.name == collection)
    if status:
        if status not in DocStatus.__members__:
            raise KbError(f"Unknown status {status!r}: choose one of {', '.join(DocStatus.__members__)}.")
        q = q.where(Document.status == status)
    if name:
        q = q.where(Document.source.contains(name))  # titles are sealed document text
    q = q.order_by(Document.id)
    if limit:
        q = q.limit(limit)
    return [_view(d, cname) for d, cname in s.execute(q).all()]


def get_document(s: Session, doc_id: int) -> DocView:
    row = s.execute(select(Document, Collection.name).join(Collection).where(Document.id == doc_id)).first()
    if row is None:
        raise NotFound(f"No document with id {doc_id}. `kb docs list` shows the ids.")
    return _view(*row)


def status_counts(s: Session, collection_ids: set[int] | None = None) -> dict[str, int]:
    q = select(Document.status, func.count()).where(Document.id.in_(_latest_ids()))
    if collection_ids is not None:
        q = q.where(Document.collection_id.in_(collection_ids))
    return {str(k): int(v) for k, v in s.execute(q.group_by(Document.status)).all()}


def delete_document(s: Session, blobs_dir, doc_id: int) -> DocView:
    """Remove a document with every version: chunks (and so vectors), blobs, rows."""
    view = get_document(s, doc_id)
    doc = s.get(Document, doc_id)
    for d in s.scalars(select(Document).where(Document.collection_id == doc.collection_id,
                                              Document.source == doc.source)):
        remove_chunks(s, d.id)
        blobs.delete(blobs_dir, d.blob_name)
        s.delete(d)
    return view


def retry(s: Session, doc_id: int) -> DocView:
    doc = s.get(Document, doc_id)
    if doc is None:
        raise NotFound(f"No document with id {doc_id}.")
    if doc.status in (DocStatus.queued, DocStatus.processing):
        raise KbError(f"Document {doc_id} is already queued.")
    if not doc.blob_name:
        raise KbError(f"Document {doc_id} has no stored original ({doc.status}: {doc.reason}); upload it again.")
    remove_chunks(s, doc.id)
    doc.status, doc.reason = DocStatus.queued, None
    queue.enqueue(s, doc.id)
    return get_document(s, doc_id)


def retry_failed(s: Session) -> list[int]:
    ids = [d for d in s.scalars(select(Document.id).where(Document.status == DocStatus.failed,
                                                          Document.blob_name.is_not(None)))]
    for d in ids:
        retry(s, d)
    return ids


def chunk_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Chunk)) or 0
