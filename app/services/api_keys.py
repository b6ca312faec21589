"""API keys: create, list, revoke, and turn a presented key into the Caller it acts as.

A key reads ``kb_<prefix>_<secret>`` (a 48-bit public prefix and a 256-bit secret). Only the SHA-256
of the whole key is stored; the prefix finds the row and the digests are compared in constant time,
so neither the database nor a timing difference gives a key away. A key acts with exactly its user's
role and grants, read again on every request (a role change or revoked grant applies at once); it
never outlives its user's account (disabled: refused). Keys are shown once, never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app import accounts, audit
from app.errors import KbError, NotFound
from app.models import ApiKey, User
from app.services.caller import Caller, Principal, actor, require_role

log = logging.getLogger(__name__)
_FORMAT = re.compile(r"^kb_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
MAX_DAYS = 3650


class Unauthenticated(KbError):
    """No key, or a key that is malformed, unknown, revoked or expired (the API answers 401)."""

    exit_code = 6


@dataclass(frozen=True)
class KeyView:
    id: int
    user: str
    role: str
    name: str
    prefix: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewKey:
    key: KeyView
    secret: str  # the whole key, shown once


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _view(k: ApiKey, user: User) -> KeyView:
    return KeyView(k.id, user.name, user.role, k.name, k.prefix, k.created_by, _aware(k.created_at),
                   _aware(k.expires_at), _aware(k.revoked_at), _aware(k.last_used_at))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create(container, who: Principal, user_name: str, name: str = "", expires_days: int | None = None) -> NewKey:
    """A new key for ``user_name``; the returned secret is the only copy."""
    require_role(who, "admin")
    name = (name or "").strip()
    if len(name) > 120:
        raise KbError("A key name has at most 120 characters.")
    if expires_days is not None and not 1 <= expires_days <= MAX_DAYS:
        raise KbError(f"--expires-days must be between 1 and {MAX_DAYS}.")
    now = datetime.now(UTC)
    with container.sessions.begin() as s:
        user = accounts.get_user(s, user_name)
        if user.disabled:
            raise KbError(f"User {user_name!r} is disabled; enable the account before giving it a key.")
        prefix = secrets.token_hex(6)
        while s.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is not None:
            prefix = secrets.token_hex(6)
        secret = f"kb_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey(user_id=user.id, name=name, prefix=prefix, key_hash=digest(secret), created_by=who.name,
                     created_at=now, expires_at=now + timedelta(days=expires_days) if expires_days else None)
        s.add(row)
        s.flush()
        audit.append(s, container.vault, kind="admin", action="apikey.create", target=user.name, actor=actor(who),
                     details={"key_id": row.id, "prefix": prefix, "name": name, "expires_days": expires_days})
        return NewKey(_view(row, user), secret)


def list_keys(container, who: Principal, user_name: str | None = None, include_inactive: bool = True) -> list[KeyView]:
    require_role(who, "admin")
    with container.sessions() as s:
        q = select(ApiKey, User).join(User, User.id == ApiKey.user_id).order_by(ApiKey.id)
        if user_name:
            q = q.where(User.id == accounts.get_user(s, user_name).id)
        views = [_view(k, u) for k, u in s.execute(q).all()]
    return views if include_inactive else [v for v in views if v.state == "active"]


def revoke(container, who: Principal, key_id: int) -> KeyView:
    """Revoke a key at once (its next request gets 401). Revoking twice is harmless."""
    require_role(who, "admin")
    with container.sessions.begin() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"No API key with id {key_id}. `kb api-keys list` shows the ids.")
        user = s.get(User, row.user_id)
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            audit.append(s, container.vault, kind="admin", action="apikey.revoke", target=user.name,
                         actor=actor(who), details={"key_id": row.id, "prefix": row.prefix})
        return _view(row, user)


def authenticate(container, presented: str | None, client: str = "api") -> Caller:
    """The Caller a presented key acts as, with its user's current role and readable collections."""
    if not presented:
        raise Unauthenticated("An API key is required: send it as 'Authorization: Bearer kb_...'. "
                              "An admin creates one with `kb api-keys create USER`.")
    m = _FORMAT.match(presented.strip())
    if m is None:
        raise Unauthenticated("The API key is malformed: it should look like kb_<12 hex>_<secret>.")
    wrong = Unauthenticated("The API key is wrong, revoked or expired. Ask an admin for a new one.")
    now = datetime.now(UTC)
    with container.sessions.begin() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == m.group(1)))
        # compare even when no row was found, so both paths cost the same
        ok = hmac.compare_digest(digest(presented.strip()), row.key_hash if row else "0" * 64)
        if row is None or not ok:
            log.info("API key refused: unknown prefix or wrong secret")
            raise wrong
        if row.revoked_at is not None or (row.expires_at is not None and _aware(row.expires_at) <= now):
            log.info("API key %d refused: %s", row.id, "revoked" if row.revoked_at else "expired")
            raise wrong
        user = s.get(User, row.user_id)
        if user is None or user.disabled:
            raise Unauthenticated("The account this API key belongs to is disabled.")
        if row.last_used_at is None or _aware(row.last_used_at) < now - TOUCH_EVERY:
            row.last_used_at = now
        return Caller(user.name, user.role, client, frozenset(accounts.readable_collection_ids(s, user)),
                      key_id=row.id)
