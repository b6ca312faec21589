"""Browser sessions: hashed tokens, one-time hand-off, idle/absolute expiry, revocation, the kept conversation."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app import accounts
from app.models import AuditRecord, WebSession
from app.services import session, users, web_sessions

ADMIN_PASSWORD = "admin-password-1"  # the `container` fixture's first admin


def sign_in(c, name="admin", password=None, now=None) -> str:
    user = session.sign_in(c, name, password or ADMIN_PASSWORD)
    token = web_sessions.complete(c, web_sessions.begin(c, user, now=now), now=now)
    assert token
    return token


def test_only_digests_are_stored_and_the_handoff_is_single_use(container):
    user = session.sign_in(container, "admin", "admin-password-1")
    code = web_sessions.begin(container, user)
    token = web_sessions.complete(container, code)
    assert token and web_sessions.complete(container, code) is None  # spent
    with container.sessions() as s:
        row = s.scalars(select(WebSession)).one()
        stored = " ".join(str(v) for v in (row.token_hash, row.handoff_hash, row.password_stamp))
    assert token not in stored and code not in stored
    assert row.token_hash == web_sessions.digest(token) and row.handoff_hash is None
    resumed = web_sessions.resume(container, token)
    assert resumed is not None and resumed.user.name == "admin" and resumed.user.role == "admin"
    assert web_sessions.resume(container, "not-a-token") is None
    assert web_sessions.resume(container, None) is None


def test_a_stale_handoff_opens_nothing(container):
    user = session.sign_in(container, "admin", "admin-password-1")
    code = web_sessions.begin(container, user, now=time.time() - web_sessions.HANDOFF_SECONDS - 1)
    assert web_sessions.complete(container, code) is None


def test_idle_and_absolute_expiry_end_the_session_with_an_audit_record(container):
    idle = sign_in(container, now=time.time() - 31 * 60)  # default idle limit: 30 minutes
    assert web_sessions.resume(container, idle) is None
    assert web_sessions.resume(container, idle, now=time.time() - 30 * 60) is None  # ended stays ended
    busy = sign_in(container)
    hours = container.settings.ui.session_hours
    start = time.time()
    # active every 10 minutes, yet over at the absolute limit
    t = start
    while t < start + hours * 3600 - 600:
        t += 600
        assert web_sessions.resume(container, busy, now=t) is not None
    assert web_sessions.resume(container, busy, now=start + hours * 3600 + 1) is None
    with container.sessions() as s:
        reasons = [r.ended_reason for r in s.scalars(select(WebSession).order_by(WebSession.id))]
        actions = [r.action for r in s.scalars(select(AuditRecord).where(AuditRecord.action.like("session.%")))]
    assert reasons == ["expired", "max_age"]
    assert actions == ["session.expired", "session.max_age"]


def test_sign_out_disabling_and_password_reset_end_every_session(container):
    admin = session.sign_in(container, "admin", "admin-password-1")
    with container.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", "staff-password-1")
    a, b = sign_in(container, "sam", "staff-password-1"), sign_in(container, "sam", "staff-password-1")
    assert web_sessions.end(container, a)
    assert web_sessions.resume(container, a) is None and web_sessions.resume(container, b) is not None
    users.reset_password(container, admin, "sam", "reset-password-77")
    assert web_sessions.resume(container, b) is None
    c1 = sign_in(container, "sam", "reset-password-77")
    users.set_disabled(container, admin, "sam", True)
    assert web_sessions.resume(container, c1) is None
    users.set_disabled(container, admin, "sam", False)
    assert web_sessions.resume(container, c1) is None  # re-enabling does not bring an ended session back


def test_own_password_change_keeps_this_session_and_ends_the_others(container):
    here, there = sign_in(container), sign_in(container)
    with pytest.raises(web_sessions.PasswordChangeError, match="current password is wrong"):
        web_sessions.change_password(container, here, "wrong-password-9", "Fresh-horse-battery-4")
    with pytest.raises(Exception, match="10 characters"):
        web_sessions.change_password(container, here, "admin-password-1", "short")
    assert web_sessions.change_password(container, here, "admin-password-1", "Fresh-horse-battery-4") == 1
    assert web_sessions.resume(container, here) is not None
    assert web_sessions.resume(container, there) is None
    session.sign_in(container, "admin", "Fresh-horse-battery-4")
    with pytest.raises(session.LoginError):
        session.sign_in(container, "admin", "admin-password-1")


def test_the_first_admin_is_asked_to_change_the_password(container):
    token = sign_in(container)
    assert web_sessions.resume(container, token).must_change_password
    web_sessions.change_password(container, token, "admin-password-1", "Fresh-horse-battery-4")
    assert not web_sessions.resume(container, token).must_change_password


def test_conversation_is_kept_sealed_and_only_for_a_live_session(container):
    token = sign_in(container)
    turns = [{"question": "Wie lange gilt die Kündigungsfrist? 解约通知期", "answer": "Drei Monate [1].",
              "sources": [{"n": 1, "text": "secret passage text"}]}]
    assert web_sessions.save_conversation(container, token, turns)
    assert web_sessions.load_conversation(container, token) == turns
    with container.sessions() as s:
        blob = s.scalars(select(WebSession.conversation_sealed)).one()
    assert b"secret passage" not in blob and "解约".encode() not in blob
    web_sessions.end(container, token)
    assert web_sessions.load_conversation(container, token) == []
    assert not web_sessions.save_conversation(container, token, turns)


def test_language_is_remembered_per_user(container):
    token = sign_in(container)
    assert web_sessions.resume(container, token).language is None
    web_sessions.set_language(container, token, "zh")
    assert web_sessions.resume(container, sign_in(container)).language == "zh"  # another browser too
    with pytest.raises(Exception, match="Unsupported language"):
        web_sessions.set_language(container, token, "xx")
