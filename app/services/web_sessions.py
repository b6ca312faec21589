"""Browser sessions that survive a reload: a random token in an HttpOnly cookie, stored hashed here.

Streamlit cannot set an HttpOnly cookie, so sign-in takes two steps (ui/server.py owns the HTTP side):

1. the sign-in form checks the password (``session.sign_in``) and calls ``begin``: a row with a
   one-time hand-off code, good for ``HANDOFF_SECONDS``;
2. the page POSTs that code to ``/kb/session`` on the same origin, which calls ``complete``: the
   code is spent and a fresh session token goes into the cookie. Only SHA-256 digests of either are
   stored, so a copy of the database opens no session.

Every page run calls ``resume`` with the cookie of *that* browser connection. A session ends at
sign-out, after ``ui.session_minutes`` idle, ``ui.session_hours`` after sign-in, when the account is
disabled or deleted, and when the password changes (the row remembers a digest of the password hash
it was opened with). Knowing a Streamlit session id therefore gives nothing without the cookie.

The open conversation is kept with the session, sealed like every other question and answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from app import accounts, audit
from app.audit import Actor
from app.errors import KbError
from app.models import User, WebSession
from app.services.session import SessionUser, _can_chat

HANDOFF_SECONDS = 60
TOUCH_EVERY_S = 15  # write last_seen at most this often: a page view must not always cost a DB write
MAX_CONVERSATION_BYTES = 2_000_000
LANGUAGES = ("en", "zh")


class PasswordChangeError(KbError):
    """The own-password change was refused; the message says why and is safe to show."""


@dataclass(frozen=True)
class Resumed:
    """A live session: who it belongs to, and what the UI remembers for them."""

    id: int
    user: SessionUser
    language: str | None
    must_change_password: bool


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _stamp(user: User) -> str:
    return digest("kb-password-stamp:" + user.password_hash)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _now(now: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC)


def _actor(user: User) -> Actor:
    return Actor(user.name, user.role, "ui")


def begin(container, user: SessionUser, now: float | None = None) -> str:
    """After a good password: a one-time hand-off code for ``complete`` (never the session token)."""
    code = secrets.token_urlsafe(32)
    at = _now(now)
    with container.sessions.begin() as s:
        row = s.scalar(select(User).where(User.name == user.name))
        if row is None or row.disabled:
            raise KbError("This account cannot sign in.")
        s.add(WebSession(user_id=row.id, handoff_hash=digest(code), password_stamp=_stamp(row), created_at=at,
                         last_seen_at=at, expires_at=at + timedelta(hours=container.settings.ui.session_hours)))
    return code


def complete(container, code: str, now: float | None = None) -> str | None:
    """Spend a hand-off code: the new session's token, or None when the code is unknown, used or stale."""
    if not code or len(code) > 200:
        return None
    at = _now(now)
    token = secrets.token_urlsafe(32)
    with container.sessions.begin() as s:
        row = s.scalar(select(WebSession).where(WebSession.handoff_hash == digest(code)))
        if row is None or row.ended_at is not None or row.token_hash is not None:
            return None
        if at - _aware(row.created_at) > timedelta(seconds=HANDOFF_SECONDS):
            row.handoff_hash, row.ended_at, row.ended_reason = None, at, "handoff_expired"
            return None
        # spent in the same UPDATE that checks it is unspent, so two racing POSTs cannot both win
        won = s.execute(update(WebSession).where(WebSession.id == row.id, WebSession.token_hash.is_(None))
                        .values(token_hash=digest(token), handoff_hash=None, last_seen_at=at)).rowcount
        return token if won == 1 else None


def _end(s, container, row: WebSession, reason: str, at: datetime) -> None:
    row.ended_at, row.ended_reason, row.conversation_sealed = at, reason, None
    user = row.user
    if user is not None:
        audit.append(s, container.vault, kind="admin", action=f"session.{reason}", target=user.name,
                     actor=_actor(user))


def _live(s, token: str | None) -> WebSession | None:
    if not token or len(token) > 200:
        return None
    row = s.scalar(select(WebSession).where(WebSession.token_hash == digest(token)))
    return row if row is not None and row.ended_at is None else None


def resume(container, token: str | None, now: float | None = None) -> Resumed | None:
    """The session the cookie ``token`` names, brought up to date; None when there is none (any more).

    Role, disabled flag and grants are read again every time, so an admin's change takes effect at
    the user's next click.
    """
    at = _now(now)
    ui = container.settings.ui
    with container.sessions.begin() as s:
        row = _live(s, token)
        if row is None:
            return None
        user = row.user
        why = None
        if user is None or user.disabled:
            why = "disabled"
        elif not hmac.compare_digest(row.password_stamp, _stamp(user)):
            why = "password_changed"
        elif at - _aware(row.last_seen_at) > timedelta(minutes=ui.session_minutes):
            why = "expired"
        elif at >= _aware(row.expires_at):
            why = "max_age"
        if why:
            _end(s, container, row, why, at)
            return None
        if (at - _aware(row.last_seen_at)).total_seconds() >= TOUCH_EVERY_S:
            row.last_seen_at = at
        signed_in = _aware(row.created_at).timestamp()
        su = SessionUser(user.name, user.role, _can_chat(s, user), signed_in, at.timestamp())
        return Resumed(row.id, su, user.language if user.language in LANGUAGES else None,
                       bool(user.must_change_password))


def end(container, token: str | None, reason: str = "logout", now: float | None = None) -> bool:
    """Sign this browser out (audited). False when the token named no live session."""
    with container.sessions.begin() as s:
        row = _live(s, token)
        if row is None:
            return False
        _end(s, container, row, reason, _now(now))
        return True


def end_all(container, user_name: str, reason: str = "ended", keep_token: str | None = None) -> int:
    """End every live session of ``user_name`` (except the one ``keep_token`` names); how many ended."""
    at = _now(None)
    keep = digest(keep_token) if keep_token else None
    n = 0
    with container.sessions.begin() as s:
        user = s.scalar(select(User).where(User.name == user_name))
        if user is None:
            return 0
        for row in s.scalars(select(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))):
            if keep is None or row.token_hash != keep:
                _end(s, container, row, reason, at)
                n += 1
    return n


# ---- the open conversation ----

def save_conversation(container, token: str | None, turns: list[dict[str, Any]]) -> bool:
    """Keep the open conversation (JSON-able turns) with the session, sealed. False without a live session."""
    data = json.dumps(turns, ensure_ascii=False, default=str)
    while len(data.encode()) > MAX_CONVERSATION_BYTES and turns:
        turns = turns[1:]  # the oldest turns go first; the rest still comes back after a reload
        data = json.dumps(turns, ensure_ascii=False, default=str)
    with container.sessions.begin() as s:
        row = _live(s, token)
        if row is None:
            return False
        vault = container.vault
        if row.dek_id is None:
            row.dek_id, dek = vault.new_data_key_named(s, "ws-")
        else:
            dek = vault.data_key(s, row.dek_id)
        row.conversation_sealed = vault.seal(dek, data, "web_session", row.id)
        return True


def load_conversation(container, token: str | None) -> list[dict[str, Any]]:
    with container.sessions() as s:
        row = _live(s, token)
        if row is None or row.conversation_sealed is None or row.dek_id is None:
            return []
        vault = container.vault
        text = vault.open_text(vault.data_key(s, row.dek_id), row.conversation_sealed, "web_session", row.id)
    turns = json.loads(text)
    return turns if isinstance(turns, list) else []


# ---- the user's own settings ----

def set_language(container, token: str | None, language: str) -> None:
    """Remember the interface language for the signed-in user (all their browsers)."""
    if language not in LANGUAGES:
        raise KbError(f"Unsupported language {language!r}; use one of: {', '.join(LANGUAGES)}.")
    with container.sessions.begin() as s:
        row = _live(s, token)
        if row is None:
            raise KbError("You are not signed in.")
        row.user.language = language


def change_password(container, token: str | None, current: str, new: str) -> int:
    """Change the signed-in user's own password after checking the current one.

    A wrong current password counts as a failed sign-in (it can lock the account, like the sign-in
    form). This session stays; every other session of the user ends. Returns how many ended.
    """
    ui = container.settings.ui
    with container.sessions.begin() as s:
        row = _live(s, token)
        if row is None:
            raise PasswordChangeError("You are not signed in.")
        name = row.user.name
    if not current or not new:
        raise PasswordChangeError("Enter your current password and the new one.")
    if current == new:
        raise PasswordChangeError("The new password is the same as the current one. Choose another.")
    accounts.check_password_strength(new)  # before the current one is checked: a weak choice costs no attempt
    with container.sessions.begin() as s:
        ok = accounts.authenticate(s, name, current, ui.lockout_attempts, timedelta(minutes=ui.lockout_minutes))
        if ok is None:
            audit.append(s, container.vault, kind="admin", action="user.password_change", outcome="denied",
                         target=name, actor=Actor(name, None, "ui"), details={"why": "wrong current password"})
    if ok is None:
        raise PasswordChangeError("The current password is wrong.")
    with container.sessions.begin() as s:
        accounts.set_password(s, name, new)  # raises with the reason when the new one is too weak
        user = accounts.get_user(s, name)
        user.must_change_password = False
        mine = _live(s, token)
        if mine is not None:
            mine.password_stamp = _stamp(user)
        audit.append(s, container.vault, kind="admin", action="user.password_change", target=name,
                     actor=_actor(user))
    return end_all(container, name, "password_changed", keep_token=token)
