"""Users, roles, collections and grants: one set of rules for the CLI, the web UI and the API.

Every change checks that the caller is an admin, keeps at least one active admin, and is written
to the audit log under the same action name whichever client asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app import accounts, audit
from app.accounts import CollectionView, UserView
from app.errors import KbError
from app.passwords import generate_password
from app.services.caller import Principal, actor, require_role

PII_POLICIES = accounts.PII_POLICIES


@dataclass(frozen=True)
class NewPassword:
    user: UserView
    password: str
    generated: bool  # True: kb made it up, show it once


def _log(s, container, who: Principal, action: str, target: str, **details) -> None:
    audit.append(s, container.vault, kind="admin", action=action, target=target[:255], actor=actor(who),
                 details=details)


def users(container, who: Principal) -> list[UserView]:
    require_role(who, "admin", "auditor")
    with container.sessions() as s:
        return accounts.list_users(s)


def collections(container, who: Principal) -> list[CollectionView]:
    require_role(who, "admin")
    with container.sessions() as s:
        return accounts.list_collections(s)


def create_user(container, who: Principal, name: str, role: str, password: str | None = None) -> NewPassword:
    """Create a user; the password is generated when none is given (to be shown once)."""
    require_role(who, "admin")
    accounts.check_role(role)
    generated = not password
    password = password or generate_password()
    with container.sessions.begin() as s:
        view = accounts.add_user(s, name.strip(), role, password)
        _log(s, container, who, "user.create", name.strip(), role=role)
    return NewPassword(view, password, generated)


def _guard_last_admin(s, who: Principal, name: str, losing_admin: bool) -> None:
    if not losing_admin:
        return
    if name == who.name:
        raise KbError("You cannot disable or demote your own account; ask another admin.")
    target = accounts.get_user(s, name)
    if target.role == "admin" and not target.disabled and accounts.count_admins(s) <= 1:
        raise KbError("This is the last active admin; create another admin first.")


def set_disabled(container, who: Principal, name: str, disabled: bool) -> UserView:
    require_role(who, "admin")
    with container.sessions.begin() as s:
        _guard_last_admin(s, who, name, disabled)
        view = accounts.set_disabled(s, name, disabled)
        _log(s, container, who, "user.disable" if disabled else "user.enable", name)
        return view


def set_role(container, who: Principal, name: str, role: str) -> UserView:
    require_role(who, "admin")
    accounts.check_role(role)
    with container.sessions.begin() as s:
        current = accounts.get_user(s, name).role
        _guard_last_admin(s, who, name, current == "admin" and role != "admin")
        view = accounts.set_role(s, name, role)
        _log(s, container, who, "user.role", name, role=role, was=current)
        return view


def reset_password(container, who: Principal, name: str, password: str | None = None) -> NewPassword:
    """Set a new password (generated when none is given) and clear any lockout."""
    require_role(who, "admin")
    generated = not password
    password = password or generate_password()
    with container.sessions.begin() as s:
        accounts.set_password(s, name, password)
        _log(s, container, who, "user.password_reset", name)
        view = accounts.UserView.of(accounts.get_user(s, name))
    return NewPassword(view, password, generated)


def create_collection(container, who: Principal, name: str, description: str = "", pii: str = "all") -> None:
    """``pii``: what ingestion scrubs from the collection's documents (PII_POLICIES)."""
    require_role(who, "admin")
    with container.sessions.begin() as s:
        accounts.add_collection(s, name.strip(), description.strip(), pii)
        _log(s, container, who, "collection.create", name.strip(), pii=pii)


def set_pii_policy(container, who: Principal, name: str, pii: str) -> int:
    """Change what is scrubbed from a collection's documents. Its documents are indexed again from their
    sealed originals under the new policy (returns how many were queued); their old chunks leave the
    index at once, so while they wait no answer quotes text kept under the other policy."""
    from app.services import documents

    require_role(who, "admin")
    accounts.check_pii_policy(pii)
    with container.sessions.begin() as s:
        col = accounts.get_collection(s, name)
        was, col.pii = col.pii, pii
        queued = documents.requeue_collection(s, col.id) if was != pii else 0
        _log(s, container, who, "collection.pii", name, pii=pii, was=was, requeued=queued)
    return queued


def grant(container, who: Principal, collection: str, *, user: str | None = None, role: str | None = None,
          write: bool = False) -> None:
    require_role(who, "admin")
    with container.sessions.begin() as s:
        accounts.grant(s, collection, user=user or None, role=role or None, write=write)
        _log(s, container, who, "grant.add", collection, user=user or None, role=role or None, write=write)


def revoke(container, who: Principal, collection: str, *, user: str | None = None, role: str | None = None) -> int:
    """Remove the grant of exactly one user or role; returns how many grants went."""
    require_role(who, "admin")
    if bool(user) == bool(role):
        raise KbError("Revoke the grant of exactly one user or one role.")
    with container.sessions.begin() as s:
        n = accounts.revoke(s, collection, user=user or None, role=role or None)
        if n:
            _log(s, container, who, "grant.revoke", collection, user=user or None, role=role or None, removed=n)
    return n
