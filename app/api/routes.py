"""kb's own endpoints under /api/v1: search, documents, the audit log, feedback, who am I."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field

from app.api.auth import caller
from app.api.errors import ApiError
from app.services import auditing, chat, documents, feedback, search
from app.services.caller import Caller

router = APIRouter(prefix="/api/v1", tags=["kb"])


def _container(request: Request):
    return request.app.state.container


# --- who am I ----------------------------------------------------------------------------------
@router.get("/me", summary="The key's user, role and readable collections")
def me(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    cols = chat.readable_collections(_container(request), who.name)
    return {"user": who.name, "role": who.role, "key_id": who.key_id,
            "collections": [{"id": i, "name": n} for i, n in cols]}


# --- search ------------------------------------------------------------------------------------
class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=100)
    collections: list[int] | None = Field(None, description="Only these of your readable collections (ids).")
    mode: Literal["dense", "bm25", "hybrid"] | None = None


def passage_json(p: search.Passage, rank: int) -> dict[str, Any]:
    return {"rank": rank, "chunk_id": p.chunk_id, "document_id": p.document_id, "collection": p.collection,
            "source": p.source, "document": p.title or p.source, "page": p.page, "sheet": p.sheet,
            "heading": p.heading, "position": p.position, "score": round(p.score, 4),
            "dense_score": None if p.dense_score is None else round(p.dense_score, 4),
            "bm25_score": None if p.bm25_score is None else round(p.bm25_score, 4), "text": p.text}


@router.post("/search", summary="The passages a question retrieves from your collections")
def search_passages(req: SearchRequest, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    hits = search.search(_container(request), who, req.query, req.k,
                         set(req.collections) if req.collections is not None else None, req.mode)
    return {"query": req.query, "hits": [passage_json(p, i + 1) for i, p in enumerate(hits)]}


# --- documents (admin) -------------------------------------------------------------------------
def doc_json(d: documents.DocView) -> dict[str, Any]:
    return asdict(d)


@router.get("/documents", summary="Documents (newest version of each) with status and reason; admins")
def list_documents(request: Request, who: Caller = Depends(caller), status: str | None = None,
                   name: str | None = None, collection: str | None = None,
                   limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
    rows = documents.list_docs(_container(request), who, name, status, collection, limit)
    return {"documents": [doc_json(d) for d in rows]}


@router.get("/documents/{doc_id}", summary="One document; admins")
def show_document(doc_id: int, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return doc_json(documents.show_doc(_container(request), who, doc_id))


@router.post("/documents", summary="Upload files or .zip archives into a collection (multipart); admins",
             status_code=202)
def upload_documents(request: Request, collection: str = Form(..., max_length=120),
                     files: list[UploadFile] = File(..., description="One or more files (field name 'files')"),
                     password: str | None = Form(None, max_length=1024, description=(
                         "Password of protected PDF/Office files: used once to open them, indexed before the "
                         "reply (their outcome is their final status), never stored or logged")),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
    c = _container(request)
    uploads = [documents.Upload(f.filename or "upload", f.file) for f in files]
    try:
        results = documents.save_uploads(c, who, uploads, collection, password=password or None)  # empty: none
    finally:
        for f in files:
            f.file.close()
    out = {"collection": collection, "results": [asdict(r) for r in results]}
    if results and all(r.outcome == "too_large" for r in results):
        raise ApiError(413, "request_too_large", f"Every file is larger than the {c.settings.ui.max_upload_mb:g} MB "
                       "upload limit (ui.max_upload_mb): split them or use `kb ingest` on the server.")
    return out


@router.post("/documents/{doc_id}/retry", summary="Queue a document again; admins")
def retry_document(doc_id: int, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    ids = documents.retry_docs(_container(request), who, [doc_id])
    return {"queued": ids}


@router.post("/documents/retry-failed", summary="Queue every failed document again; admins")
def retry_failed(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"queued": documents.retry_docs(_container(request), who, failed=True)}


@router.delete("/documents/{doc_id}", summary="Delete a document with every older version; admins")
def delete_document(doc_id: int, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"deleted": doc_json(documents.delete_doc(_container(request), who, doc_id))}


# --- audit log ---------------------------------------------------------------------------------
def record_json(v: auditing.AuditView) -> dict[str, Any]:
    return asdict(v)


@router.get("/audit/records", summary="The audit log, newest first (auditors and admins; staff: their own)")
def audit_records(request: Request, who: Caller = Depends(caller), actor: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, contains: str | None = None,
                  kind: Literal["query", "admin", "feedback", "anchor"] | None = None,
                  limit: int = Query(100, ge=1, le=1000),
                  offset: int = Query(0, ge=0)) -> dict[str, Any]:
    rows = auditing.query(_container(request), who, actor=actor, since=since, until=until, contains=contains,
                          kind=kind, limit=limit, offset=offset)
    return {"records": [record_json(v) for v in rows]}


@router.get("/audit/records/{seq}", summary="One audit record")
def audit_record(seq: int, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return record_json(auditing.get(_container(request), who, seq))


@router.post("/audit/verify", summary="Verify the whole hash chain now (auditors and admins)")
def audit_verify(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return asdict(auditing.verify(_container(request), who))


# --- feedback ----------------------------------------------------------------------------------
class FeedbackRequest(BaseModel):
    audit_seq: int = Field(..., description="The answer's audit record (kb.audit_seq of the chat response).")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


@router.post("/feedback", summary="Rate an answer you were given", status_code=201)
def give_feedback(req: FeedbackRequest, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return asdict(feedback.give(_container(request), who, req.audit_seq, req.rating, req.comment))
