"""Sign-in, lockout, idle timeout and which pages each role may open."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import timedelta

from app import accounts, audit
from app.audit import Actor
from app.errors import KbError
from app.models import User
from app.services import throttle

# Page keys in navigation order. The UI maps each key to a page; nothing else decides access.
CHAT, DOCUMENTS, USERS, QUERY_LOG = "chat", "documents", "users", "query_log"
RETRIEVAL_TEST, DASHBOARD = "retrieval_test", "dashboard"
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "staff": (CHAT,),
    "admin": (CHAT, DOCUMENTS, USERS, RETRIEVAL_TEST, DASHBOARD),
    "auditor": (QUERY_LOG,),  # plus Chat when the auditor has been granted a collection
}
GENERIC_FAILURE = "Wrong user name or password."
ADDRESS_THROTTLED = ("Too many failed sign-ins from your address: try again in {minutes} minutes. "
                     "An administrator can see the attempts in the audit log.")


class LoginError(KbError):
    """Sign-in refused; the message is safe to show (it never says whether the user exists)."""


@dataclass(frozen=True)
class SessionUser:
    name: str
    role: str
    can_chat: bool
    signed_in_at: float
    last_seen: float
    client: str = "ui"

    @property
    def pages(self) -> tuple[str, ...]:
        return allowed_pages(self.role, self.can_chat)


def allowed_pages(role: str, can_chat: bool) -> tuple[str, ...]:
    pages = ROLE_PAGES.get(role, ())
    if role == "auditor" and can_chat:
        pages = (CHAT, *pages)
    return pages


def may_open(user: SessionUser | None, page: str) -> bool:
    return user is not None and page in user.pages


def _actor(name: str | None, role: str | None) -> Actor:
    return Actor(name, role, "ui")


def _locked(user: User | None) -> bool:
    return user is not None and accounts.UserView.of(user).locked


def _can_chat(session, user: User) -> bool:
    return user.role != "auditor" or bool(accounts.readable_collection_ids(session, user))


def sign_in(container, name: str, password: str, client: str | None = None) -> SessionUser:
    """A signed-in session, or LoginError. Every attempt is written to the audit log; a lockout too.

    Checks run in this order (app.services.throttle): an address that failed `address_attempts` times
    is refused for every account; an account locked in the database refuses only addresses that
    failed on it, so its owner can still sign in from a clean address; the "locked" answer comes after
    `lockout_attempts` failures of this address on this name, the same for existing and unknown
    names. Every refusal costs one scrypt check, like a wrong password.
    """
    name = (name or "").strip()
    if not name or not password:
        raise LoginError("Enter your user name and password.")
    ui = container.settings.ui
    window = ui.lockout_minutes * 60
    counts = throttle.counter_for(container)
    addr, pair = throttle.address_key(client), throttle.pair_key(name, client)
    details = {"client_addr": client} if client else {}
    if counts.count(addr, window) >= ui.address_attempts:
        accounts.burn_password_check(password)
        counts.add(addr, window)
        with container.sessions.begin() as s:
            audit.append(s, container.vault, kind="admin", action="login.failed", outcome="denied",
                         target=name[:120], actor=_actor(None, None), details={**details, "why": "address throttled"})
        raise LoginError(ADDRESS_THROTTLED.format(minutes=ui.lockout_minutes))
    tried = counts.count(pair, window)
    with container.sessions.begin() as s:
        user = s.query(User).filter(User.name == name).one_or_none()
        was_locked = _locked(user)
        if was_locked and tried > 0:
            accounts.burn_password_check(password)  # this address helped lock it: no more guesses from here
            ok = None
        else:
            ok = accounts.authenticate(s, name, password, ui.lockout_attempts, timedelta(minutes=ui.lockout_minutes),
                                       ignore_lock=was_locked)
        if ok is not None:
            counts.clear(pair)
            audit.append(s, container.vault, kind="admin", action="login.ok", target=ok.name,
                         actor=_actor(ok.name, ok.role), details=details)
            now = time.time()
            return SessionUser(ok.name, ok.role, _can_chat(s, ok), now, now)
        counts.add(addr, window)
        failures = counts.add(pair, window)
        locked_now = failures >= ui.lockout_attempts
        why = ("disabled" if user is not None and user.disabled else
               "locked" if was_locked else
               "bad password" if user is not None else "unknown user")
        audit.append(s, container.vault, kind="admin", action="login.failed", outcome="denied",
                     target=name[:120], actor=_actor(None, None), details={**details, "why": why})
        if failures == ui.lockout_attempts:
            audit.append(s, container.vault, kind="admin", action="login.locked", outcome="denied",
                         target=name[:120], actor=_actor(None, None),
                         details={**details, "attempts": ui.lockout_attempts, "minutes": ui.lockout_minutes})
    if locked_now:
        # Said after the same number of failures from this address whether or not the account exists, so
        # it tells an attacker nothing, and tells the real user why the right password stopped working.
        raise LoginError(f"Too many failed attempts: this account is locked for {ui.lockout_minutes} minutes. "
                         "An administrator can unlock it by resetting the password.")
    raise LoginError(GENERIC_FAILURE)


def touch(container, user: SessionUser, now: float | None = None) -> SessionUser | None:
    """The session brought up to date, or None when it has been idle too long or the account is gone.

    Role, disabled flag and grants are read again on every page view, so an admin's change takes
    effect at the user's next click rather than at their next sign-in.
    """
    now = time.time() if now is None else now
    if now - user.last_seen > container.settings.ui.session_minutes * 60:
        return None
    with container.sessions() as s:
        row = s.query(User).filter(User.name == user.name).one_or_none()
        if row is None or row.disabled:
            return None
        return replace(user, role=row.role, can_chat=_can_chat(s, row), last_seen=now)


def sign_out(container, user: SessionUser, reason: str = "logout") -> None:
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action=f"session.{reason}", target=user.name,
                     actor=_actor(user.name, user.role))
