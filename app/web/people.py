"""Users, roles and collection grants for the admin page. Every change is written to the audit log."""

from __future__ import annotations

from app import accounts, audit
from app.accounts import CollectionView, UserView
from app.audit import Actor
from app.errors import KbError
from app.passwords import generate_password


def _log(s, container, admin, action: str, target: str, **details) -> None:
    audit.append(s, container.vault, kind="admin", action=action, target=target[:255],
                 actor=Actor(admin.name, admin.role, "ui"), details=details)


def users(container) -> list[UserView]:
    with container.sessions() as s:
        return accounts.list_users(s)


def collections(container) -> list[CollectionView]:
    with container.sessions() as s:
        return accounts.list_collections(s)


def create_user(container, admin, name: str, role: str, password: str | None = None) -> str:
    """Create a user; returns the password (generated when none is given, to be shown once)."""
    password = password or generate_password()
    with container.sessions.begin() as s:
        accounts.add_user(s, name.strip(), role, password)
        _log(s, container, admin, "user.create", name.strip(), role=role)
    return password


def _guard_last_admin(s, admin, name: str, losing_admin: bool) -> None:
    if not losing_admin:
        return
    if name == admin.name:
        raise KbError("You cannot disable or demote your own account; ask another admin.")
    target = accounts.get_user(s, name)
    if target.role == "admin" and not target.disabled and accounts.count_admins(s) <= 1:
        raise KbError("This is the last active admin; create another admin first.")


def set_disabled(container, admin, name: str, disabled: bool) -> UserView:
    with container.sessions.begin() as s:
        _guard_last_admin(s, admin, name, disabled)
        view = accounts.set_disabled(s, name, disabled)
        _log(s, container, admin, "user.disable" if disabled else "user.enable", name)
        return view


def set_role(container, admin, name: str, role: str) -> UserView:
    with container.sessions.begin() as s:
        current = accounts.get_user(s, name).role
        _guard_last_admin(s, admin, name, current == "admin" and role != "admin")
        view = accounts.set_role(s, name, role)
        _log(s, container, admin, "user.role", name, role=role, was=current)
        return view


def reset_password(container, admin, name: str, password: str | None = None) -> str:
    """Set a new password (generated when none is given) and clear any lockout; returns it."""
    password = password or generate_password()
    with container.sessions.begin() as s:
        accounts.set_password(s, name, password)
        _log(s, container, admin, "user.password_reset", name)
    return password


def create_collection(container, admin, name: str, description: str = "") -> None:
    with container.sessions.begin() as s:
        accounts.add_collection(s, name.strip(), description.strip())
        _log(s, container, admin, "collection.create", name.strip())


def grant(container, admin, collection: str, *, user: str | None = None, role: str | None = None,
          write: bool = False) -> None:
    with container.sessions.begin() as s:
        accounts.grant(s, collection, user=user or None, role=role or None, write=write)
        _log(s, container, admin, "grant.add", collection, user=user or None, role=role or None, write=write)


def revoke(container, admin, collection: str, *, user: str | None = None, role: str | None = None) -> int:
    with container.sessions.begin() as s:
        n = accounts.revoke(s, collection, user=user or None, role=role or None)
        if n:
            _log(s, container, admin, "grant.revoke", collection, user=user or None, role=role or None)
    return n
