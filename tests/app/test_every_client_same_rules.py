"""The CLI and the web UI call the same service, so they give the same result, refusal and audit record."""

from __future__ import annotations

import io
import os

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import accounts
from app.cli import cli
from app.errors import KbError, PermissionDenied
from app.models import AuditRecord
from app.services import documents, users
from app.services.session import SessionUser
from app.settings import NON_SETTING_VARIABLES


def web_admin(name: str = "admin") -> SessionUser:
    return SessionUser(name, "admin", True, 0.0, 0.0)


@pytest.fixture
def run_cli(container, monkeypatch):
    for key in [k for k in os.environ if k.startswith("KB_") and k not in NON_SETTING_VARIABLES]:
        monkeypatch.delenv(key)
    env = {"KB_DATA_DIR": str(container.settings.data_dir), "KB_DATABASE__URL": container.settings.database_url,
           "KB_RETRIEVAL__EMBED_CACHE_DIR": str(container.settings.embedder_cache_dir)}

    def run(*args: str, ok: bool = True):
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return run


def records(container, action: str) -> list[AuditRecord]:
    with container.sessions() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)))


def test_neither_client_can_disable_the_last_admin(container, run_cli):
    cli_result = run_cli("users", "disable", "admin", ok=False)
    assert isinstance(cli_result.exception, KbError) and "last active admin" in str(cli_result.exception)
    with pytest.raises(KbError, match="own account"):
        users.set_disabled(container, web_admin(), "admin", True)
    # a second admin in the web may disable the first only while another active admin remains
    users.create_user(container, web_admin(), "root2", "admin", "second-admin-pw")
    run_cli("users", "disable", "root2")
    with pytest.raises(KbError, match="last active admin"):
        users.set_disabled(container, web_admin("root2"), "admin", True)
    with container.sessions() as s:
        assert not accounts.get_user(s, "admin").disabled
    assert [r.target for r in records(container, "user.disable")] == ["root2"]


def test_revoking_a_grant_is_one_audited_action(container, run_cli):
    run_cli("collections", "add", "hr")
    users.create_user(container, web_admin(), "alice", "staff", "alice-password-1")
    for client in ("cli", "web"):
        users.grant(container, web_admin(), "hr", user="alice")
        if client == "cli":
            assert "removed 1 grant" in run_cli("collections", "revoke", "hr", "--user", "alice").output
        else:
            assert users.revoke(container, web_admin(), "hr", user="alice") == 1
    cli_rec, web_rec = records(container, "grant.revoke")
    assert (cli_rec.client, web_rec.client) == ("cli", "ui")
    assert cli_rec.details == web_rec.details == {"user": "alice", "role": None, "removed": 1}
    assert cli_rec.target == web_rec.target == "hr"
    assert records(container, "grant.remove") == []


def test_documents_retry_and_delete_alike_from_both(container, run_cli):
    uploads = [documents.Upload(f"{n}.txt", io.BytesIO(f"{n} policy text".encode())) for n in ("alpha", "beta")]
    queued = documents.save_uploads(container, web_admin(), uploads, "handbook")
    ids = {r.source.removesuffix(".txt"): r.document_id for r in queued}
    with container.sessions.begin() as s:  # let them settle as failed, so both may be retried
        from app.models import Document

        for d in s.scalars(select(Document)):
            d.status, d.reason = "failed", "test"
    run_cli("docs", "retry", str(ids["alpha"]))
    assert documents.retry_docs(container, web_admin(), [ids["beta"]]) == [ids["beta"]]
    cli_rec, web_rec = records(container, "docs.retry")
    assert cli_rec.details == {"documents": [ids["alpha"]]} and web_rec.details == {"documents": [ids["beta"]]}
    # retrying a queued document is refused the same way
    again = run_cli("docs", "retry", str(ids["alpha"]), ok=False)
    with pytest.raises(KbError, match="already queued") as web_refusal:
        documents.retry_docs(container, web_admin(), [ids["alpha"]])
    assert str(again.exception) == str(web_refusal.value)

    run_cli("docs", "delete", str(ids["alpha"]), "--yes")
    documents.delete_doc(container, web_admin(), ids["beta"])
    cli_del, web_del = records(container, "docs.delete")
    assert (cli_del.target, web_del.target) == ("alpha.txt", "beta.txt")
    assert cli_del.details.keys() == web_del.details.keys() == {"document_id", "collection"}
    assert documents.list_docs(container, web_admin()) == []


def test_a_staff_caller_is_refused_every_admin_action(container):
    staff = SessionUser("sam", "staff", True, 0.0, 0.0)
    for action in (lambda: users.users(container, staff),
                   lambda: users.create_user(container, staff, "eve", "admin", "eve-password-1"),
                   lambda: users.grant(container, staff, "handbook", user="sam"),
                   lambda: documents.list_docs(container, staff),
                   lambda: documents.save_uploads(container, staff, [], "handbook")):
        with pytest.raises(PermissionDenied, match="admin"):
            action()
    assert "eve" not in [r.target for r in records(container, "user.create")]
