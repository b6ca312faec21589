"""Document administration for the browser: streamed, size-capped uploads and the queue view."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app import accounts, audit, documents
from app.audit import Actor
from app.documents import DocView
from app.errors import KbError
from ingest.discovery import is_junk
from ingest.submit import Submitted, submit_paths
from ingest.types import TERMINAL

_COPY_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


@dataclass(frozen=True)
class Upload:
    name: str  # as the browser sent it: display only, never a path
    stream: BinaryIO


def _actor(user) -> Actor:
    return Actor(user.name, user.role, "ui")


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


def collection_names(container) -> list[str]:
    with container.sessions() as s:
        return [c.name for c in accounts.list_collections(s)]


def save_uploads(container, uploads: Iterable[Upload], collection: str, user) -> list[Submitted]:
    """Stream each upload to a private temp folder (capped at ui.max_upload_mb), then queue it.

    A .zip is opened as a folder by the submitter (with its entry, size and ratio limits).
    Every file ends up with an outcome, including the ones refused here for size.
    """
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
            if any(is_junk(part) for part in parts):
                continue  # .DS_Store, Thumbs.db, Office lock files: what a folder upload drags along
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
            results.extend(submit_paths(container, paths, collection, uploaded_by=user.name))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action="docs.upload", target=collection, actor=_actor(user),
                     details={"files": len(results), "queued": sum(r.outcome == "queued" for r in results)})
    return results


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


def list_docs(container, name: str | None = None, status: str | None = None, collection: str | None = None,
              limit: int = 500) -> list[DocView]:
    with container.sessions() as s:
        rows = documents.list_documents(s, collection or None, status or None, (name or "").strip() or None)
    return rows[-limit:][::-1]  # newest first


def docs_by_id(container, ids: list[int]) -> list[DocView]:
    if not ids:
        return []
    with container.sessions() as s:
        return documents.list_documents(s, ids=ids)


def counts(container) -> dict[str, int]:
    with container.sessions() as s:
        return documents.status_counts(s)


def progress(views: list[DocView]) -> tuple[int, int]:
    """(finished, total) for a batch: a document is finished once it reaches a terminal status."""
    return sum(v.status in TERMINAL for v in views), len(views)


def retry_doc(container, doc_id: int, user) -> DocView:
    with container.sessions.begin() as s:
        view = documents.retry(s, doc_id)
        audit.append(s, container.vault, kind="admin", action="docs.retry", target=str(doc_id), actor=_actor(user),
                     details={"documents": [doc_id]})
    return view


def delete_doc(container, doc_id: int, user) -> DocView:
    with container.sessions.begin() as s:
        view = documents.delete_document(s, container.settings.blobs_dir, doc_id)
        audit.append(s, container.vault, kind="admin", action="docs.delete", target=view.source[:255],
                     actor=_actor(user), details={"document_id": doc_id, "collection": view.collection})
    return view
