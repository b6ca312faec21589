"""Document indexes that fit the ingestion lookups.

SQLite chose ix_documents_current (true for nearly every row) for the duplicate and older-version
lookups, scanning the whole table once per ingested document. The boolean index goes; the duplicate
check gets (collection_id, content_hmac); older versions are found through the unique
(collection_id, source, version) key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_documents_current", table_name="documents")
    op.drop_index("ix_documents_content_hmac", table_name="documents")
    op.create_index("ix_documents_content", "documents", ["collection_id", "content_hmac"])


def downgrade() -> None:
    op.drop_index("ix_documents_content", table_name="documents")
    op.create_index("ix_documents_content_hmac", "documents", ["content_hmac"])
    op.create_index("ix_documents_current", "documents", ["current"])
