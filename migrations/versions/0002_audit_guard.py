"""Make the audit log append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

The one way out is `kb audit purge` (app/audit.py): it first appends an anchor record naming the
last purged seq, and the triggers let a DELETE through only for rows that anchor covers while it
ends the chain; on PostgreSQL the purge must also `SET LOCAL kb.audit_purge = 'on'`. Triggers bind
every role; to keep the app role from disabling them, see the GRANT hardening in app/audit.py.

Note for later migrations: a SQLite batch ALTER of audit_log recreates the table and drops these
triggers; such a migration must create them again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION kb_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_kind text;
    head_through bigint;
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('kb.audit_purge', true) = 'on' THEN
        SELECT kind, (details->>'purged_through_seq')::bigint INTO head_kind, head_through
          FROM audit_log ORDER BY seq DESC LIMIT 1;
        IF head_kind = 'anchor' AND OLD.seq <= head_through THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Records leave the log only through `kb audit purge --before DATE`.';
END;
$$
"""

SQLITE_DELETE_GUARD = """
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (
    SELECT 1 FROM (SELECT kind, details FROM audit_log ORDER BY seq DESC LIMIT 1) AS head
     WHERE head.kind = 'anchor'
       AND OLD.seq <= CAST(json_extract(head.details, '$.purged_through_seq') AS INTEGER)
)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused (use kb audit purge)');
END
"""

SQLITE_UPDATE_GUARD = """
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("CREATE TRIGGER audit_log_guard_rows BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION kb_audit_guard()")
        op.execute("CREATE TRIGGER audit_log_guard_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION kb_audit_guard()")
    else:
        op.execute(SQLITE_UPDATE_GUARD)
        op.execute(SQLITE_DELETE_GUARD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_guard_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_guard_rows ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS kb_audit_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
