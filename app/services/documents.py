"""Documents: upload (streamed, size-capped), list, show, retry, delete, for every client.

The functions that take a session are the repository; the ones that take a caller are the actions
(role check, work, audit record) that the CLI, the web UI and the API call.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import accounts, audit, blobs
from app.errors import KbError, NotFound
from app.models import Chunk, Collection, Document
from app.services.caller import Principal, actor, require_role
from ingest import queue
from ingest.discovery import is_junk, junk_reason
from ingest.pipeline import remove_chunks
from ingest.submit import Submitted, submit_paths
from ingest.types import TERMINAL, DocStatus
from ingest.worker import process_now, worker_id

_COPY_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


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


def requeue_collection(s: Session, collection_id: int) -> int:
    """Index a collection's documents again from their sealed originals (its PII policy changed); their
    chunks leave the index now. Refused while a worker is processing one of them, which would finish it
    under the old policy."""
    busy = s.scalar(select(func.count()).select_from(Document).where(
        Document.collection_id == collection_id, Document.status == DocStatus.processing)) or 0
    if busy:
        raise KbError(f"{busy} document(s) of this collection are being indexed right now; try again when "
                      "the worker has finished them (`kb docs list --status processing`).")
    ids = list(s.scalars(select(Document.id).where(Document.collection_id == collection_id,
                                                   Document.status == DocStatus.indexed,
                                                   Document.blob_name.is_not(None))))
    for d in ids:
        retry(s, d)
    return len(ids)


def retry_failed(s: Session) -> list[int]:
    ids = [d for d in s.scalars(select(Document.id).where(Document.status == DocStatus.failed,
                                                          Document.blob_name.is_not(None)))]
    for d in ids:
        retry(s, d)
    return ids


def chunk_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Chunk)) or 0


# --- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    name: str  # as the browser sent it: display only, never a path
    stream: BinaryIO


def safe_file_name(name: str) -> str:
    """The last component of an uploaded name, with characters no file system likes replaced."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip(". ").strip()[:200]
    return base or "upload"


def safe_relative_path(name: str) -> PurePosixPath:
    """A folder upload's relative name made safe: no absolute path, no '..', every part cleaned."""
    parts = [p for p in (name or "").replace("\\", "/").split("/") if p not in ("", ".", "..")]
    cleaned = [safe_file_name(p) for p in parts[-8:]]  # deeper trees keep their last 8 levels
    return PurePosixPath(*cleaned) if cleaned else PurePosixPath("upload")


def collection_names(container, who: Principal) -> list[str]:
    require_role(who, "admin")
    with container.sessions() as s:
        return [c.name for c in accounts.list_collections(s)]


def _log_upload(container, who: Principal, collection: str, results: list[Submitted],
                password_given: bool = False) -> None:
    details = {"files": len(results), "queued": sum(r.outcome == "queued" for r in results)}
    if password_given:  # that one was given, never what it was
        details["password_given"] = True
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action="docs.upload", target=collection[:255],
                     actor=actor(who), details=details)


def ingest_paths(container, who: Principal, paths: list[Path], collection: str) -> Iterator[Submitted]:
    """Queue files, folders and .zip archives that lie on the server (the CLI); one result per file."""
    require_role(who, "admin")
    results: list[Submitted] = []
    try:
        for item in submit_paths(container, paths, collection, uploaded_by=who.name):
            results.append(item)
            yield item
    finally:
        _log_upload(container, who, collection, results)


def save_uploads(container, who: Principal, uploads: Iterable[Upload], collection: str,
                 password: str | None = None) -> list[Submitted]:
    """Stream each upload to a private temp folder (capped at ui.max_upload_mb), then queue it.

    A .zip is opened as a folder by the submitter (with its entry, size and ratio limits).
    Every file ends up with an outcome, including the ones refused here for size.

    With ``password`` (password-protected PDF or Office files) the new files are not left to a worker:
    their jobs are claimed as they are created and each is indexed here, before the call returns, the
    password opening it once in memory (as ``retry_docs`` does). It is never queued, stored, audited
    or logged; the outcome of those files is their final status. A file it does not open ends
    ``needs_password`` and can be retried with the right one."""
    require_role(who, "admin")
    if password is not None and not password:
        raise KbError("The password is empty: leave it out, or give the one that opens the files.")
    collection = collection.strip()
    if not collection:
        raise KbError("Choose or name a collection to upload into.")
    cap = int(container.settings.ui.max_upload_mb * 1024 * 1024)
    results: list[Submitted] = []
    tmp_root = Path(tempfile.mkdtemp(prefix="kb-upload-"))
    try:
        paths: list[Path] = []
        for i, up in enumerate(uploads):
            parts = [p for p in (up.name or "").replace("\\", "/").split("/") if p not in ("", ".", "..")]
            junk = next((part for part in parts if is_junk(part)), None)
            if junk is not None:  # .DS_Store, Thumbs.db, Office lock files, dotfiles: reported, not indexed
                results.append(Submitted("/".join(parts), "skipped", None, junk_reason(junk)))
                continue
            rel = safe_relative_path(up.name)  # "a.pdf", or "folder/sub/a.pdf" from a folder upload
            name = rel.as_posix()
            target = tmp_root.joinpath(str(i), *rel.parts)  # one folder per file: no collisions
            target.parent.mkdir(parents=True)
            if not _copy_capped(up.stream, target, cap):
                results.append(Submitted(name, "too_large", None,
                                         f"larger than the {container.settings.ui.max_upload_mb:g} MB upload limit "
                                         "(ui.max_upload_mb): split it or use `kb ingest` on the server"))
                target.unlink(missing_ok=True)
                continue
            paths.append(tmp_root / str(i) / rel.parts[0])  # a folder is walked: sources keep its path
        if paths:
            owner = f"upload:{worker_id()}" if password else None
            results.extend(submit_paths(container, paths, collection, uploaded_by=who.name, hold_as=owner))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    _log_upload(container, who, collection, results, password_given=password is not None)
    if password:
        results = [_index_with_password(container, r, owner, password) for r in results]
    return results


def _index_with_password(container, result: Submitted, owner: str | None, password: str) -> Submitted:
    """Index one file of a password upload in this process; its outcome becomes its final status."""
    if result.outcome != "queued" or result.document_id is None or owner is None:
        return result
    with container.sessions.begin() as s:
        claim = queue.claim_document(s, result.document_id, owner, container.settings.ingest.lease_seconds)
    process_now(container, claim, password)
    with container.sessions() as s:
        view = get_document(s, result.document_id)
    return Submitted(result.source, str(view.status), view.id, view.reason)


def _copy_capped(src: BinaryIO, dst: Path, cap: int) -> bool:
    """Copy in chunks; False (and a partial file) as soon as more than ``cap`` bytes arrive."""
    written = 0
    if hasattr(src, "seek"):
        src.seek(0)
    with dst.open("wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > cap:
                return False
            out.write(chunk)
    return True


def list_docs(container, who: Principal, name: str | None = None, status: str | None = None,
              collection: str | None = None, limit: int | None = None, newest_first: bool = True) -> list[DocView]:
    """The newest version of each document, filtered; newest first unless asked otherwise."""
    require_role(who, "admin")
    with container.sessions() as s:
        rows = list_documents(s, collection or None, status or None, (name or "").strip() or None)
    rows = rows[::-1] if newest_first else rows
    return rows[:limit] if limit else rows


def docs_by_id(container, who: Principal, ids: list[int]) -> list[DocView]:
    require_role(who, "admin")
    if not ids:
        return []
    with container.sessions() as s:
        return list_documents(s, ids=ids)


def show_doc(container, who: Principal, doc_id: int) -> DocView:
    require_role(who, "admin")
    with container.sessions() as s:
        return get_document(s, doc_id)


def counts(container, who: Principal) -> dict[str, int]:
    require_role(who, "admin")
    with container.sessions() as s:
        return status_counts(s)


def progress(views: list[DocView]) -> tuple[int, int]:
    """(finished, total) for a batch: a document is finished once it reaches a terminal status."""
    return sum(v.status in TERMINAL for v in views), len(views)


def retry_docs(container, who: Principal, doc_ids: list[int] | None = None, *, failed: bool = False,
               password: str | None = None) -> list[int]:
    """Queue the given documents (or, with ``failed``, every failed one) again; returns their ids.

    With ``password`` (an encrypted PDF or Office file) each document is processed right here, in
    this process, before the call returns: the password opens the file once, in memory, and is
    never queued, stored, audited or logged (the audit record says only that one was given). A
    worker in another process could only get it through the database or a side channel, so it
    does not. The document's status tells how it went (``show_doc``)."""
    require_role(who, "admin")
    if bool(doc_ids) == failed:
        raise KbError("Give document ids or ask for every failed document.")
    if password is not None:
        if failed:
            raise KbError("A password opens the documents it is given for: name them by id.")
        return [_retry_with_password(container, who, d, password) for d in doc_ids or []]
    with container.sessions.begin() as s:
        ids = retry_failed(s) if failed else [retry(s, d).id for d in doc_ids or []]
        audit.append(s, container.vault, kind="admin", action="docs.retry", target=",".join(map(str, ids))[:255],
                     actor=actor(who), details={"documents": ids})
    return ids


def _retry_with_password(container, who: Principal, doc_id: int, password: str) -> int:
    if not password:
        raise KbError("The password is empty.")
    with container.sessions.begin() as s:
        retry(s, doc_id)  # the checks and clean-up of any retry; then the job is ours, not the queue's
        claim = queue.claim_document(s, doc_id, f"retry:{worker_id()}", container.settings.ingest.lease_seconds)
        audit.append(s, container.vault, kind="admin", action="docs.retry", target=str(doc_id), actor=actor(who),
                     details={"documents": [doc_id], "password_given": True})
    process_now(container, claim, password)
    return doc_id


def delete_doc(container, who: Principal, doc_id: int) -> DocView:
    """Delete a document with every older version: chunks, vectors, stored originals."""
    require_role(who, "admin")
    with container.sessions.begin() as s:
        view = delete_document(s, container.settings.blobs_dir, doc_id)
        audit.append(s, container.vault, kind="admin", action="docs.delete", target=view.source[:255],
                     actor=actor(who), details={"document_id": doc_id, "collection": view.collection})
    return view
