"""Initial schema: users, collections, grants, keys, documents, chunks, jobs, index events, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", TS),
        sa.Column("must_change_password", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("role IN ('staff', 'admin', 'auditor')", name="ck_users_role"),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("role", sa.String(16)),
        sa.Column("can_write", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("collection_id", "user_id", "role", name="uq_grants_target"),
        sa.CheckConstraint("(user_id IS NULL) <> (role IS NULL)", name="ck_grants_one_target"),
    )
    op.create_index("ix_grants_collection_id", "grants", ["collection_id"])
    op.create_index("ix_grants_user_id", "grants", ["user_id"])
    op.create_table(
        "key_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kek_version", sa.Integer, nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_data_keys_kek_version", "data_keys", ["kek_version"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("current", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("title_sealed", sa.LargeBinary),
        sa.Column("format", sa.String(32)),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("file_hmac", sa.String(64), nullable=False),
        sa.Column("content_hmac", sa.String(64)),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("dek_id", sa.String(36), sa.ForeignKey("data_keys.id"), nullable=False),
        sa.Column("blob_name", sa.String(64)),
        sa.Column("n_chunks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pii_found", sa.Integer, nullable=False, server_default="0"),
        sa.Column("uploaded_by", sa.String(120)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("collection_id", "source", "version", name="uq_documents_source_version"),
    )
    for col in ("collection_id", "current", "file_hmac", "content_hmac", "status"):
        op.create_index(f"ix_documents_{col}", "documents", [col])
    op.create_table(
        "chunks",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("text_sealed", sa.LargeBinary, nullable=False),
        sa.Column("vector_sealed", sa.LargeBinary, nullable=False),
        sa.Column("page", sa.Integer),
        sa.Column("meta_sealed", sa.LargeBinary),
        sa.Column("n_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("document_id", "idx", name="uq_chunks_document_idx"),
    )
    op.create_index("ix_chunks_document_id", "chunks", ["document_id"])
    op.create_index("ix_chunks_collection_id", "chunks", ["collection_id"])
    op.create_table(
        "index_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("document_id", sa.Integer, nullable=False),
        sa.Column("chunk_ids", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(120)),
        sa.Column("lease_expires_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_lease_expires_at", "jobs", ["lease_expires_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("actor", sa.String(120)),
        sa.Column("actor_role", sa.String(16)),
        sa.Column("client", sa.String(16)),
        sa.Column("target", sa.String(255)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("dek_id", sa.String(36)),
        sa.Column("payload_sealed", sa.LargeBinary),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    for col in ("kind", "created_at", "actor"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])


def downgrade() -> None:
    for table in ("audit_log", "jobs", "index_events", "chunks", "documents", "data_keys", "key_versions",
                  "grants", "collections", "users"):
        op.drop_table(table)
