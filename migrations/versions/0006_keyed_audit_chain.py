"""Re-link the audit log under the keyed chain (issue 19): every link an HMAC under a key derived
from the master key, instead of a plain SHA-256 anyone could recompute.

The old chain is verified first (app.audit.relink refuses to re-link a log that does not verify, so
a tampered history is never blessed); the re-link is recorded as its own ``audit.relink`` event. It
needs the master key, which app.migrate.upgrade passes when kb runs it (`kb migrate`, `kb init`,
`kb restore`); without the key only an empty log can be migrated. Run it as the table owner: it lifts
the append-only triggers for its own transaction.

Downgrade leaves the records as they are: a kb from before this revision cannot verify a keyed chain.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import context, op
from sqlalchemy import text
from sqlalchemy.orm import Session

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY_ATTRIBUTE = "kb_audit_chain_key"  # set by app.migrate.upgrade


def upgrade() -> None:
    conn = op.get_bind()
    if conn.execute(text("SELECT count(*) FROM audit_log")).scalar() == 0:
        return
    key = context.config.attributes.get(KEY_ATTRIBUTE)
    if key is None:
        raise RuntimeError("Migration 0006 re-links the audit log under the master key: run it with `kb migrate`, "
                           "which loads the key (KB_MASTER_KEY_FILE or KB_MASTER_KEY).")
    from app import audit  # the kernel's own chain code, so the links are exactly what verify checks

    session = Session(bind=conn)
    try:
        audit.relink(session, key)
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    pass
