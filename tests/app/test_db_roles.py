"""`kb db setup-roles` on a real PostgreSQL: kb then runs as an app role that cannot change, erase or
unguard the audit log, and the audit attacks a DBA-level attacker without the key can still make are
reported by `kb audit verify` run as that app role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from app import audit
from app.errors import KbError, PermissionDenied
from app.models import AuditRecord
from app.services import db_roles, session
from app.services.caller import Caller, operator
from app.services.container import Container
from app.services.setup import init
from tests.app.pg_roles import app_role_kb
from tests.app.test_audit import fill, verify
from tests.app.test_audit_keyed import forged_anchor_row
from tests.conftest import make_settings


@pytest.fixture
def roles(pg_database, tmp_path) -> Iterator[tuple[Container, Container, str, str]]:
    """(the DBA's kb, the app role's kb, owner name, app name) over one fresh database and data dir."""
    dba = Container(make_settings(tmp_path / "data", pg_database))
    init(dba, "admin", "admin-password-1")
    try:
        with app_role_kb(dba, tmp_path / "data") as (app_kb, owner, app):
            yield dba, app_kb, owner, app
    finally:
        dba.engine.dispose()


REFUSED = [
    ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "permission denied"),
    ("DELETE FROM audit_log WHERE seq = 2", "permission denied"),
    ("TRUNCATE audit_log", "permission denied"),
    ("ALTER TABLE audit_log DISABLE TRIGGER USER", "must be owner"),
    ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard_rows", "must be owner"),
    ("DROP TRIGGER audit_log_guard_rows ON audit_log", "must be owner"),
    ("ALTER TABLE audit_log OWNER TO CURRENT_USER", "must be owner"),
    ("DROP TABLE audit_log", "must be owner"),
    ("CREATE OR REPLACE FUNCTION kb_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
     "must be owner|permission denied"),
]


@pytest.mark.parametrize(("sql", "error"), REFUSED, ids=[s.split(" audit")[0].split(" kb_")[0] for s, _ in REFUSED])
def test_the_app_role_cannot_change_erase_or_unguard_the_log(roles, sql, error):
    _, app_kb, _, _ = roles
    fill(app_kb, 3)  # kb works as the app role: appends, seals, checkpoints
    with pytest.raises(DBAPIError, match=error), app_kb.engine.begin() as conn:
        conn.execute(text(sql))
    report = verify(app_kb)
    assert report.ok and report.checked == 5  # kb init's record, setup-roles' own record and fill's 3


def test_a_forged_anchor_by_the_app_role_deletes_nothing_and_is_reported(roles):
    _, app_kb, _, _ = roles
    fill(app_kb)
    with app_kb.engine.begin() as conn:  # the app may INSERT: the forged anchor goes in ...
        conn.execute(insert(AuditRecord.__table__), [forged_anchor_row(app_kb, 8, audit.chain_hash)])
    with pytest.raises(DBAPIError, match="permission denied"), app_kb.engine.begin() as conn:
        conn.execute(text("SET LOCAL kb.audit_purge = 'on'"))
        conn.execute(text("DELETE FROM audit_log WHERE seq <= 8"))  # ... but the delete is refused
    report = verify(app_kb)
    assert not report.ok and report.first_bad_seq == 12 and report.last_good_seq == 11
    assert "unkeyed" in report.problem and report.checked == 12


def test_the_app_role_does_its_normal_work(roles):
    _, app_kb, _, _ = roles
    user = session.sign_in(app_kb, "admin", "admin-password-1", client="10.0.0.9")  # updates users, appends
    assert user.role == "admin"
    with pytest.raises(session.LoginError):
        session.sign_in(app_kb, "admin", "wrong-password-00", client="10.0.0.9")
    assert verify(app_kb).ok


def test_attacks_by_a_dba_without_the_key_are_reported_to_the_app_role(roles):
    dba, app_kb, _, _ = roles
    fill(app_kb)
    with dba.engine.begin() as conn:  # a superuser can lift the guards; it still has no master key
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 9"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    report = verify(app_kb)
    assert not report.ok and (report.first_bad_seq, report.last_good_seq) == (9, 8)
    with dba.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM audit_log"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    report = verify(app_kb)
    assert not report.ok and report.first_bad_seq == 1 and "wiped" in report.problem


def test_setup_roles_is_idempotent_and_has_a_cli(roles, monkeypatch):
    dba, app_kb, owner, app = roles
    from app.cli import cli

    s = dba.settings
    env = {"KB_DATA_DIR": str(s.data_dir), "KB_DATABASE_URL": s.database_url}
    out = CliRunner().invoke(cli, ["db", "setup-roles", "--owner", owner, "--app", app, "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert '"created": []' in out.output
    with dba.engine.connect() as conn:
        privileges = set(conn.execute(text(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = 'audit_log' AND grantee = :a"), {"a": app}).scalars())
        table_owner = conn.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'")).scalar()
        trigger_fn_owner = conn.execute(text("SELECT pg_get_userbyid(proowner) FROM pg_proc "
                                             "WHERE proname = 'kb_audit_guard'")).scalar()
    assert privileges == {"SELECT", "INSERT"} and table_owner == owner and trigger_fn_owner == owner
    fill(app_kb, 2)
    assert verify(app_kb).ok


def test_setup_roles_refuses_what_it_cannot_do(roles, tmp_path):
    dba, app_kb, owner, app = roles
    with pytest.raises(PermissionDenied):
        db_roles.setup_roles(dba, Caller("sam", "staff", "cli"), owner=owner, app=app)
    with pytest.raises(KbError, match="different roles"):
        db_roles.setup_roles(dba, operator("cli"), owner=app, app=app)
    with pytest.raises(KbError, match="not allowed"):
        db_roles.setup_roles(dba, operator("cli"), owner='x"; DROP TABLE users; --', app=app)
    with pytest.raises(KbError, match="superuser or a role with CREATEROLE"):
        db_roles.setup_roles(app_kb, operator("cli"), owner=owner, app=app)  # the app role is no DBA


def test_setup_roles_explains_sqlite(tmp_path):
    c = Container(make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'kb.sqlite3'}"))
    init(c, "admin", "admin-password-1")
    with pytest.raises(KbError, match="SQLite"):
        db_roles.setup_roles(c, operator("cli"), owner="kb_owner", app="kb_app")
    c.engine.dispose()


def test_a_purge_as_the_app_role_says_to_run_it_as_the_owner(roles):
    dba, app_kb, _, _ = roles
    from datetime import UTC, datetime, timedelta

    from app.services import auditing

    fill(app_kb, 2)
    app_kb.settings.audit.retention_days = 0
    with pytest.raises(KbError, match="owner role"):
        auditing.purge(app_kb, operator("cli"), datetime.now(UTC) - timedelta(seconds=0))
    assert verify(app_kb).ok  # nothing was deleted, and no anchor was left behind
