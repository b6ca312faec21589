"""PostgreSQL roles for kb (`kb db setup-roles`, run by the DBA): an owner role that owns the tables and
the audit triggers, and an application role that may read and write the working tables but may only
SELECT and INSERT on ``audit_log``.

Why: a trigger binds every role, but the owner of a table (or a superuser) can ``ALTER TABLE ...
DISABLE TRIGGER``, ``TRUNCATE`` or drop it. When the application logs in as the owner (what a bare
`kb init` produces), a compromised application server can erase the audit log. After this command the
app role owns nothing: UPDATE, DELETE and TRUNCATE of the log are refused with "permission denied"
before any trigger runs, and disabling a trigger is refused with "must be owner".

Run it connected as a superuser (or a role with CREATEROLE that may take over the tables), after
`kb init` or `kb migrate` created the schema. Afterwards point kb's KB_DATABASE__URL at the app role;
run `kb migrate` and `kb audit purge` with a URL naming the owner (give it a password to log in) or
a DBA login that is a member of it. Tables later migrations create get the app's privileges by
default (ALTER DEFAULT PRIVILEGES), so only a migration that recreates audit_log would need the
command again. It is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

from app import audit, migrate
from app.errors import KbError
from app.services.caller import Principal, actor, require_role

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
AUDIT_TABLE = "audit_log"
READ_ONLY_TABLES = ("alembic_version",)  # the app reads the schema revision; only migrations change it
APP_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APP_AUDIT_PRIVILEGES = "SELECT, INSERT"
GUARD_FUNCTION = "kb_audit_guard()"


@dataclass
class RolesReport:
    database: str
    owner: str
    app: str
    owner_can_log_in: bool
    tables: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # roles this run created


def _ident(name: str, what: str) -> str:
    if not ROLE_NAME.match(name):
        raise KbError(f"The {what} role name {name!r} is not allowed: use lower-case letters, digits and '_' "
                      "(at most 63 characters, not starting with a digit).")
    return f'"{name}"'


def _literal(conn: Connection, value: str) -> str:
    # CREATE/ALTER ROLE ... PASSWORD takes no bind parameters: quote through the server's own function.
    return conn.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one()


def _ensure_role(conn: Connection, name: str, password: str | None, login: bool) -> bool:
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first() is not None
    # Never a superuser, never able to create roles or databases, never bypassing row security. An
    # existing role keeps its login unless this run gives it a password (running again changes nothing).
    opts = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION"
    if login or not exists:
        opts = f"{'LOGIN' if login else 'NOLOGIN'} {opts}"
    if password is not None:
        opts += f" PASSWORD {_literal(conn, password)}"
    conn.execute(text(f"{'ALTER' if exists else 'CREATE'} ROLE \"{name}\" {opts}"))
    return not exists


def setup_roles(container, who: Principal, *, owner: str, app: str, app_password: str | None = None,
                owner_password: str | None = None) -> RolesReport:
    """Create (or bring up to date) the owner and app roles and move the schema to the owner. See the module doc."""
    require_role(who, "admin")
    if owner == app:
        raise KbError("The owner and the app role must be different roles: that is the point.")
    q_owner, q_app = _ident(owner, "owner"), _ident(app, "app")
    engine = container.engine
    if engine.dialect.name != "postgresql":
        raise KbError("`kb db setup-roles` is for PostgreSQL. A SQLite database has no roles: it is protected by "
                      "the data dir's file permissions (0700/0600, kept by kb).")
    if migrate.current_revision(engine) != migrate.head_revision(engine):
        raise KbError("The schema is not at the latest revision: run `kb migrate` (as the DBA) first.")
    with engine.begin() as conn:
        me = conn.execute(text("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")).one()
        if not (me.rolsuper or me.rolcreaterole):
            raise KbError("`kb db setup-roles` must run as a superuser or a role with CREATEROLE (the DBA): set "
                          "KB_DATABASE__URL to such a login for this command.")
        if conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :n"), {"n": app}).scalar():
            raise KbError(f"The role {app} is a superuser, which bypasses every privilege. Pick another app role.")
        created = [n for n, pw, login in ((owner, owner_password, owner_password is not None),
                                          (app, app_password, True)) if _ensure_role(conn, n, pw, login)]
        # The app role must not be able to become the owner.
        conn.execute(text(f"REVOKE {q_owner} FROM {q_app}"))
        db = conn.execute(text("SELECT current_database()")).scalar_one()
        tables = list(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                        "ORDER BY tablename")).scalars())
        for t in tables:
            conn.execute(text(f'ALTER TABLE "{t}" OWNER TO {q_owner}'))  # its sequences and triggers follow
        seqs = conn.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")).scalars()
        for sq in list(seqs):
            conn.execute(text(f'ALTER SEQUENCE "{sq}" OWNER TO {q_owner}'))
        conn.execute(text(f"ALTER FUNCTION {GUARD_FUNCTION} OWNER TO {q_owner}"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO {q_app}'))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {q_app}"))
        for t in tables:
            conn.execute(text(f'REVOKE ALL ON "{t}" FROM PUBLIC, {q_app}'))
            privileges = (APP_AUDIT_PRIVILEGES if t == AUDIT_TABLE else
                          "SELECT" if t in READ_ONLY_TABLES else APP_TABLE_PRIVILEGES)
            conn.execute(text(f'GRANT {privileges} ON "{t}" TO {q_app}'))
        conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q_app}"))
        # Tables and sequences later migrations (run as the owner) create are the app's to use too.
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES FOR ROLE {q_owner} IN SCHEMA public "
                          f"GRANT {APP_TABLE_PRIVILEGES} ON TABLES TO {q_app}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES FOR ROLE {q_owner} IN SCHEMA public "
                          f"GRANT USAGE, SELECT ON SEQUENCES TO {q_app}"))
        report = RolesReport(db, owner, app, owner_password is not None, tables, created)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action="db.setup_roles", actor=actor(who), target=db,
                     details={"owner": owner, "app": app, "created": created, "tables": len(tables)})
    return report
