"""Browser sessions (issue 18): a random token in an HttpOnly cookie, only its SHA-256 stored here.

A row starts as a one-time hand-off (``handoff_hash``, valid for a minute) created when the password
was checked; the browser trades it, by a form POST, for the session token the cookie carries. The
open conversation is kept sealed with the row, so a reload brings it back. ``users.language`` is the
interface language a user picked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("handoff_hash", sa.String(64), unique=True),
        sa.Column("password_stamp", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("ended_reason", sa.String(24)),
        sa.Column("dek_id", sa.String(36)),
        sa.Column("conversation_sealed", sa.LargeBinary),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.add_column("users", sa.Column("language", sa.String(8)))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
