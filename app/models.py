"""ORM rows. Alembic (migrations/) owns the schema; these classes only map it.

Text that comes from documents or users (chunk text, questions, answers) is stored sealed
(app/crypto.py); the columns holding it end in ``_sealed``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # staff | admin | auditor
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))  # interface language the user picked
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Collection(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # app.accounts.PII_POLICIES: what ingestion scrubs from its documents
    pii: Mapped[str] = mapped_column(String(16), default="all", server_default="all")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Grant(Base):
    """Read (and optionally write) access to a collection, for one user or for everyone in a role."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("collection_id", "user_id", "role", name="uq_grants_target"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KeyVersion(Base):
    """A master-key (KEK) version. The key itself never enters the database; its fingerprint does."""

    __tablename__ = "key_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataKey(Base):
    """A data key (DEK), stored only wrapped by a master-key version."""

    __tablename__ = "data_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kek_version: Mapped[int] = mapped_column(Integer, index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    # No index on `current` or `content_hmac` alone: SQLite would pick `current` (true for nearly every
    # row) and scan the table for each document; the unique key and ix_documents_content serve the lookups.
    __table_args__ = (UniqueConstraint("collection_id", "source", "version", name="uq_documents_source_version"),
                      Index("ix_documents_content", "collection_id", "content_hmac"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(1024))  # display path, never used as a file path
    version: Mapped[int] = mapped_column(Integer, default=1)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    title_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # titles are document text
    format: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_hmac: Mapped[str] = mapped_column(String(64), index=True)  # keyed hash of the original bytes
    content_hmac: Mapped[str | None] = mapped_column(String(64))  # keyed hash of the text
    status: Mapped[str] = mapped_column(String(24), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    dek_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"))
    blob_name: Mapped[str | None] = mapped_column(String(64))  # random name under data/blobs
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    pii_found: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    collection: Mapped[Collection] = relationship()


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "idx", name="uq_chunks_document_idx"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # the FAISS / BM25 id
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(Integer, index=True)  # denormalized for ACL at retrieval
    idx: Mapped[int] = mapped_column(Integer)
    text_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    vector_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    page: Mapped[int | None] = mapped_column(Integer)
    meta_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # JSON {heading, sheet}: document text too
    n_tokens: Mapped[int] = mapped_column(Integer, default=0)


class IndexEvent(Base):
    """Append-only feed of chunk additions and removals; search processes follow it by watermark."""

    __tablename__ = "index_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    op: Mapped[str] = mapped_column(String(8))  # add | remove
    document_id: Mapped[int] = mapped_column(Integer)
    chunk_ids: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class AuditRecord(Base):
    """One hash-chained record of the audit log (questions and admin events share the chain)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # query | admin | anchor
    action: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str | None] = mapped_column(String(120), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict] = mapped_column(JSON)  # non-sensitive fields: ids, scores, timings, model
    dek_id: Mapped[str | None] = mapped_column(String(36))
    payload_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # question, answer, reasons
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ApiKey(Base):
    """A user's key for the HTTP API. Only the SHA-256 of the key is stored; ``prefix`` finds the row."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user: Mapped[User] = relationship()


class WebSession(Base):
    """A browser session. Only SHA-256 digests of the cookie token and of the one-time hand-off are stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_stamp: Mapped[str] = mapped_column(String(64))  # digest of the password hash it was opened with
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_reason: Mapped[str | None] = mapped_column(String(24))
    dek_id: Mapped[str | None] = mapped_column(String(36))
    conversation_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    user: Mapped[User] = relationship()


__all__ = [
    "ApiKey", "AuditRecord", "Base", "Chunk", "Collection", "DataKey", "Document", "Grant", "IndexEvent",
    "Job", "KeyVersion", "User", "WebSession", "utcnow",
]
