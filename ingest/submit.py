"""Queue files for ingestion: seal the original, record a document row, enqueue a job.

Re-submitting an unchanged file adds nothing; a changed file becomes a new version that replaces
the old one once it is indexed. Files rejected before parsing (too large, unsafe archive entries)
are recorded with their reason, so nothing an admin dropped in goes unaccounted for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import accounts, blobs
from app.models import Document
from ingest import queue
from ingest.discovery import Candidate, Limits, discover
from ingest.pii.file_names import display_safe, scrub_file_name
from ingest.types import DocStatus, IngestContext, IngestError


@dataclass
class Submitted:
    source: str
    outcome: str  # queued | unchanged | a terminal status recorded without parsing
    document_id: int | None = None
    reason: str | None = None


def limits_from(container: IngestContext) -> Limits:
    return Limits.from_settings(container.settings.ingest)


def submit_paths(container: IngestContext, paths: Iterable[Path], collection: str,
                 uploaded_by: str | None = None, hold_as: str | None = None) -> Iterator[Submitted]:
    """Queue every file under ``paths`` (folders recurse, .zip archives open). One transaction per file.
    ``hold_as``: each new job is claimed by that owner in the same transaction, so no worker takes it
    (an upload with a password is indexed by the uploader's own process)."""
    col_id = _collection_id(container, collection)
    for cand in discover(list(paths), limits_from(container)):
        yield submit_candidate(container, col_id, cand, uploaded_by, hold_as)


def _collection_id(container: IngestContext, name: str) -> int:
    """The collection's id, created if need be. Two uploads into a new collection at once (the browser sends
    a folder's files in parallel) both see it missing and both insert; the one that loses the unique name
    reads the winner's row in a fresh transaction instead of failing."""
    def ensure() -> int:
        with container.sessions.begin() as s:
            return accounts.ensure_collection(s, name).id

    try:
        return ensure()
    except IntegrityError:  # lost the race: the winner's row is committed, the second try reads it
        return ensure()


def stored_name(container: IngestContext, source: str) -> str:
    """The name kept in the database and shown in citations: identifiers scrubbed (when PII scrubbing is
    on), bidirectional-override characters removed."""
    if not container.settings.pii.enabled:
        return display_safe(source)
    return scrub_file_name(source, container.vault.content_hmac)[0]


def submit_candidate(container: IngestContext, collection_id: int, cand: Candidate,
                     uploaded_by: str | None, hold_as: str | None = None) -> Submitted:
    cand = replace(cand, source=stored_name(container, cand.source))
    if cand.error is not None:
        return _record_rejected(container, collection_id, cand.source, cand.size, cand.error, uploaded_by)
    try:
        data = cand.read()
    except IngestError as err:
        return _record_rejected(container, collection_id, cand.source, cand.size, err, uploaded_by)
    except OSError as exc:
        err = IngestError(DocStatus.failed, f"could not read the file: {exc.strerror or exc}")
        return _record_rejected(container, collection_id, cand.source, cand.size, err, uploaded_by)
    return submit_bytes(container, collection_id, cand.source, data, uploaded_by, hold_as)


def submit_bytes(container: IngestContext, collection_id: int, source: str, data: bytes,
                 uploaded_by: str | None = None, hold_as: str | None = None) -> Submitted:
    vault = container.vault
    file_hmac = vault.bytes_hmac(data)
    with container.sessions.begin() as s:
        latest = _latest(s, collection_id, source)
        if latest is not None and latest.file_hmac == file_hmac:
            return Submitted(source, "unchanged", latest.id, latest.status)
        dek_id, dek = vault.new_data_key(s)
        doc = Document(collection_id=collection_id, source=source, version=_next_version(latest),
                       current=latest is None, size=len(data), file_hmac=file_hmac,
                       status=DocStatus.queued, dek_id=dek_id, uploaded_by=uploaded_by)
        s.add(doc)
        s.flush()
        doc.blob_name = blobs.store(vault, container.settings.blobs_dir, dek, doc.id, data)
        queue.enqueue(s, doc.id, new=True)
        if hold_as:
            queue.claim_document(s, doc.id, hold_as, container.settings.ingest.lease_seconds)
        return Submitted(source, "queued", doc.id)


def _record_rejected(container: IngestContext, collection_id: int, source: str, size: int, err: IngestError,
                     uploaded_by: str | None) -> Submitted:
    vault = container.vault
    marker = vault.content_hmac(f"rejected:{err.status}:{size}")  # stable, so a re-run adds nothing
    with container.sessions.begin() as s:
        latest = _latest(s, collection_id, source)
        if latest is not None and latest.file_hmac == marker:
            return Submitted(source, "unchanged", latest.id, latest.reason)
        dek_id, _ = vault.new_data_key(s)
        doc = Document(collection_id=collection_id, source=source, version=_next_version(latest),
                       current=latest is None, size=size, file_hmac=marker, status=err.status,
                       reason=err.reason, dek_id=dek_id, uploaded_by=uploaded_by)
        s.add(doc)
        s.flush()
        return Submitted(source, str(err.status), doc.id, err.reason)


def _latest(s: Session, collection_id: int, source: str) -> Document | None:
    return s.scalar(select(Document).where(Document.collection_id == collection_id, Document.source == source)
                    .order_by(Document.version.desc()).limit(1))


def _next_version(latest: Document | None) -> int:
    return 1 if latest is None else latest.version + 1


def count_by_status(s: Session, document_ids: list[int]) -> dict[str, int]:
    rows = s.execute(select(Document.status, func.count()).where(Document.id.in_(document_ids))
                     .group_by(Document.status)).all()
    return {str(k): int(v) for k, v in rows}
