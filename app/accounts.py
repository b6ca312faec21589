"""Users, roles, collections and grants. Functions take the session explicitly and return plain views."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.errors import KbError, NotFound
from app.models import Collection, Grant, User, utcnow
from app.passwords import hash_password, verify_password

ROLES = ("staff", "admin", "auditor")
_NAME = re.compile(r"^[\w.@-]{1,120}$")


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    role: str
    disabled: bool
    locked: bool
    created_at: datetime

    @classmethod
    def of(cls, u: User) -> UserView:
        locked = bool(u.locked_until and _aware(u.locked_until) > utcnow())
        return cls(u.id, u.name, u.role, u.disabled, locked, u.created_at)


@dataclass(frozen=True)
class CollectionView:
    id: int
    name: str
    description: str
    grants: list[str]
    pii: str = "all"  # PII_POLICIES


def _aware(ts: datetime) -> datetime:
    from datetime import UTC

    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise KbError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    return role


# The passwords (and stems) that head every leaked-password list, in English and pinyin; a password that
# is one of these, or one of these with digits or symbols around it, is refused.
_COMMON = frozenset("""
password passw0rd qwerty qwertyuiop asdfgh asdfghjkl zxcvbnm iloveyou admin administrator welcome letmein
monkey dragon master sunshine princess football baseball superman trustno1 abc123 changeme default secret
woaini woaiwoziji aini nihao zhongguo china beijing shanghai mima wodemima baobei
""".split())
_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")


def _trivial(password: str) -> str | None:
    """Why the password is guessable in seconds, or None."""
    low = password.lower()
    if len(set(low)) <= 3:
        return "it uses too few different characters"
    stem = low.strip("0123456789!@#$%^&*()_+-=.,?~ ")
    if stem in _COMMON or low in _COMMON:
        return "it is one of the most common passwords"
    for period in range(1, len(low) // 2 + 1):  # "abcabcabcabc", "12121212"
        if len(low) % period == 0 and low == low[:period] * (len(low) // period):
            return "it repeats a short pattern"
    for row in _KEYBOARD_ROWS:  # runs along the keyboard or the alphabet, either way
        if low in row or low in row[::-1]:
            return "it is a run of neighbouring keys"
    return None


def check_password_strength(password: str) -> None:
    if len(password) < 10:
        raise KbError("Passwords need at least 10 characters.")
    why = _trivial(password)
    if why:
        raise KbError(f"This password is too easy to guess ({why}); choose a longer, less predictable one.")


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"No user named {name!r}. `kb users list` shows who exists.")
    return user


def add_user(session: Session, name: str, role: str, password: str) -> UserView:
    check_role(role)
    if not _NAME.match(name):
        raise KbError("User names may use letters, digits, '.', '_', '-', '@' (at most 120 characters).")
    check_password_strength(password)
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise KbError(f"A user named {name!r} already exists.")
    user = User(name=name, role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return UserView.of(user)


def list_users(session: Session) -> list[UserView]:
    return [UserView.of(u) for u in session.scalars(select(User).order_by(User.name))]


def set_disabled(session: Session, name: str, disabled: bool = True) -> UserView:
    user = get_user(session, name)
    user.disabled = disabled
    return UserView.of(user)


def set_role(session: Session, name: str, role: str) -> UserView:
    user = get_user(session, name)
    user.role = check_role(role)
    return UserView.of(user)


def set_password(session: Session, name: str, password: str) -> None:
    check_password_strength(password)
    user = get_user(session, name)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None


DUMMY_HASH = "scrypt$16384$8$1$AAAA$AAAA"  # checked against when there is no real hash: the same scrypt work


def burn_password_check(password: str) -> None:
    """The work of one password check, for answers that must take as long as a real one."""
    verify_password(password, DUMMY_HASH)


def authenticate(session: Session, name: str, password: str, max_failures: int, lockout: timedelta,
                 *, ignore_lock: bool = False) -> User | None:
    """The user when name and password match an enabled, unlocked account; counts failures and locks.

    `ignore_lock`: the caller (sign-in throttling) decided this client may try a locked account, e.g.
    its real owner from an address that did not cause the lock. Every refusal costs one scrypt check,
    so unknown, disabled and locked accounts answer in the time a wrong password takes."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        burn_password_check(password)
        return None
    if user.disabled or (not ignore_lock and user.locked_until and _aware(user.locked_until) > utcnow()):
        burn_password_check(password)
        return None
    if not verify_password(password, user.password_hash):
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until, user.failed_logins = utcnow() + lockout, 0
        return None
    user.failed_logins = 0
    if not ignore_lock:  # the owner signing in from a clean address leaves the lock on the others
        user.locked_until = None
    return user


def count_admins(session: Session) -> int:
    return len(session.scalars(select(User.id).where(User.role == "admin", User.disabled.is_(False))).all())


# --- collections and grants --------------------------------------------------------------------
def get_collection(session: Session, name: str) -> Collection:
    col = session.scalar(select(Collection).where(Collection.name == name))
    if col is None:
        raise NotFound(f"No collection named {name!r}. `kb collections list` shows what exists.")
    return col


# A collection's personal-data policy: what ingestion scrubs from its documents (ingest.pii.for_policy).
PII_POLICIES = {
    "all": "all personal data kb finds, names and addresses included (the default)",
    "identifiers": "identifiers only (ID and card numbers, phones, e-mail...); names and addresses are kept, "
                   "for public documents",
}


def check_pii_policy(policy: str) -> str:
    if policy not in PII_POLICIES:
        raise KbError(f"Unknown PII policy {policy!r}: choose one of {', '.join(PII_POLICIES)}.")
    return policy


def add_collection(session: Session, name: str, description: str = "", pii: str = "all") -> Collection:
    if session.scalar(select(Collection).where(Collection.name == name)) is not None:
        raise KbError(f"A collection named {name!r} already exists.")
    col = _insert_collection(session, name, description)
    col.pii = check_pii_policy(pii)
    return col


def ensure_collection(session: Session, name: str) -> Collection:
    """The collection, created if missing. A concurrent creator surfaces as the unique index's IntegrityError
    at the flush (not as "already exists"), so a caller can retry in a fresh transaction and read its row."""
    col = session.scalar(select(Collection).where(Collection.name == name))
    return col if col is not None else _insert_collection(session, name)


def _insert_collection(session: Session, name: str, description: str = "") -> Collection:
    if not _NAME.match(name):
        raise KbError("Collection names may use letters, digits, '.', '_', '-', '@' (at most 120 characters).")
    col = Collection(name=name, description=description)
    session.add(col)
    session.flush()
    return col


def grant(session: Session, collection: str, *, user: str | None = None, role: str | None = None,
          write: bool = False) -> Grant:
    if (user is None) == (role is None):
        raise KbError("Grant to exactly one of --user NAME or --role ROLE.")
    col = get_collection(session, collection)
    user_id = get_user(session, user).id if user else None
    if role:
        check_role(role)
    existing = session.scalar(select(Grant).where(
        Grant.collection_id == col.id, Grant.user_id.is_(user_id) if user_id is None else Grant.user_id == user_id,
        Grant.role.is_(None) if role is None else Grant.role == role))
    if existing:
        existing.can_write = existing.can_write or write
        return existing
    g = Grant(collection_id=col.id, user_id=user_id, role=role, can_write=write)
    session.add(g)
    session.flush()
    return g


def revoke(session: Session, collection: str, *, user: str | None = None, role: str | None = None) -> int:
    col = get_collection(session, collection)
    q = select(Grant).where(Grant.collection_id == col.id)
    q = q.where(Grant.user_id == get_user(session, user).id) if user else q.where(Grant.role == check_role(role or ""))
    rows = session.scalars(q).all()
    for g in rows:
        session.delete(g)
    return len(rows)


def readable_collection_ids(session: Session, user: User) -> set[int]:
    """Collections whose chunks this user may receive. Admins read everything; others need a grant."""
    if user.disabled:
        return set()
    if user.role == "admin":
        return set(session.scalars(select(Collection.id)))
    q = select(Grant.collection_id).where(or_(Grant.user_id == user.id, Grant.role == user.role))
    return set(session.scalars(q))


def writable_collection_ids(session: Session, user: User) -> set[int]:
    if user.disabled:
        return set()
    if user.role == "admin":
        return set(session.scalars(select(Collection.id)))
    q = select(Grant.collection_id).where(or_(Grant.user_id == user.id, Grant.role == user.role),
                                          Grant.can_write.is_(True))
    return set(session.scalars(q))


def list_collections(session: Session) -> list[CollectionView]:
    users = {u.id: u.name for u in session.scalars(select(User))}
    out = []
    for col in session.scalars(select(Collection).order_by(Collection.name)):
        grants = [
            f"{'user:' + users.get(g.user_id, '?') if g.user_id else 'role:' + (g.role or '?')}"
            f"{'(rw)' if g.can_write else '(r)'}"
            for g in session.scalars(select(Grant).where(Grant.collection_id == col.id).order_by(Grant.id))
        ]
        out.append(CollectionView(col.id, col.name, col.description, grants, col.pii))
    return out
