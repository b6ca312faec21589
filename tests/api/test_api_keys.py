"""API keys: created for a user, shown once, stored hashed, revoked at once, acting as exactly that user."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from app.errors import KbError, PermissionDenied
from app.models import ApiKey, AuditRecord
from app.services import api_keys, chat, users
from app.services.caller import Caller, operator

ADMIN = operator("cli")


@pytest.fixture
def kb(container):
    users.create_user(container, ADMIN, "sam", "staff", "sam-password-1")
    users.create_collection(container, ADMIN, "hr")
    users.create_collection(container, ADMIN, "finance")
    users.grant(container, ADMIN, "hr", user="sam")
    return container


def test_a_key_acts_as_its_user_with_current_grants(kb):
    new = api_keys.create(kb, ADMIN, "sam", name="report bot", expires_days=30)
    assert new.secret.startswith(f"kb_{new.key.prefix}_") and len(new.secret) > 50
    who = api_keys.authenticate(kb, new.secret)
    assert (who.name, who.role, who.client, who.key_id) == ("sam", "staff", "api", new.key.id)
    hr = {i for i, _ in chat.readable_collections(kb, "sam")}
    assert who.collection_ids == frozenset(hr) and len(hr) == 1
    users.grant(kb, ADMIN, "finance", user="sam")  # a new grant applies at the next request
    assert len(api_keys.authenticate(kb, new.secret).collection_ids) == 2
    users.set_role(kb, ADMIN, "sam", "auditor")  # so does a role change
    assert api_keys.authenticate(kb, new.secret).role == "auditor"


def test_only_a_hash_is_stored_and_the_secret_is_never_logged(kb):
    new = api_keys.create(kb, ADMIN, "sam")
    secret_part = new.secret.rsplit("_", 1)[1]
    with kb.sessions() as s:
        row = s.get(ApiKey, new.key.id)
        assert row.key_hash == api_keys.digest(new.secret) and secret_part not in row.key_hash
        recs = s.scalars(select(AuditRecord).where(AuditRecord.action == "apikey.create")).all()
    assert len(recs) == 1 and recs[0].details["key_id"] == new.key.id
    assert secret_part not in json.dumps(recs[0].details) and recs[0].payload_sealed is None
    listed = api_keys.list_keys(kb, ADMIN)
    assert [k.id for k in listed] == [new.key.id] and secret_part not in repr(listed)


@pytest.mark.parametrize("bad", [None, "", "nonsense", "kb_000000000000_" + "x" * 43])
def test_missing_malformed_or_unknown_keys_are_refused(kb, bad):
    with pytest.raises(api_keys.Unauthenticated):
        api_keys.authenticate(kb, bad)


def test_wrong_secret_revoked_expired_and_disabled_are_refused(kb):
    new = api_keys.create(kb, ADMIN, "sam")
    with pytest.raises(api_keys.Unauthenticated):
        api_keys.authenticate(kb, new.secret[:-2] + ("AA" if not new.secret.endswith("AA") else "BB"))
    api_keys.revoke(kb, ADMIN, new.key.id)
    with pytest.raises(api_keys.Unauthenticated):
        api_keys.authenticate(kb, new.secret)
    assert api_keys.list_keys(kb, ADMIN)[0].state == "revoked"
    assert api_keys.list_keys(kb, ADMIN, include_inactive=False) == []

    old = api_keys.create(kb, ADMIN, "sam", expires_days=1)
    api_keys.authenticate(kb, old.secret)
    with kb.sessions.begin() as s:
        s.execute(update(ApiKey).where(ApiKey.id == old.key.id)
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(api_keys.Unauthenticated):
        api_keys.authenticate(kb, old.secret)

    live = api_keys.create(kb, ADMIN, "sam")
    users.set_disabled(kb, ADMIN, "sam", True)
    with pytest.raises(api_keys.Unauthenticated, match="disabled"):
        api_keys.authenticate(kb, live.secret)


def test_only_admins_manage_keys(kb):
    sam = Caller("sam", "staff", "api")
    with pytest.raises(PermissionDenied):
        api_keys.create(kb, sam, "sam")
    with pytest.raises(PermissionDenied):
        api_keys.list_keys(kb, sam)
    with pytest.raises(KbError, match="expires"):
        api_keys.create(kb, ADMIN, "sam", expires_days=0)


def test_cli_create_list_revoke(kb, monkeypatch):
    from app.cli import cli

    s = kb.settings
    monkeypatch.setenv("KB_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("KB_DATABASE__URL", s.database_url)
    runner = CliRunner()
    out = runner.invoke(cli, ["api-keys", "create", "sam", "--name", "ci", "--expires-days", "7", "--json"])
    assert out.exit_code == 0, out.output
    made = json.loads(out.output)
    assert made["user"] == "sam" and made["state"] == "active" and made["api_key"].startswith("kb_")
    assert api_keys.authenticate(kb, made["api_key"]).name == "sam"
    listing = runner.invoke(cli, ["api-keys", "list"])
    assert listing.exit_code == 0 and made["prefix"] in listing.output and made["api_key"] not in listing.output
    gone = runner.invoke(cli, ["api-keys", "revoke", str(made["id"])])
    assert gone.exit_code == 0 and "revoked" in gone.output
    with pytest.raises(api_keys.Unauthenticated):
        api_keys.authenticate(kb, made["api_key"])
