"""Who is acting: every service takes a Caller, checks its role and names it in the audit record."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Protocol

from app.audit import Actor
from app.errors import PermissionDenied


class Principal(Protocol):
    """Anything that acts: a Caller, or the web UI's signed-in session."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def client(self) -> str: ...


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    client: str  # cli | ui | api
    collection_ids: frozenset[int] | None = None  # readable collections; None: every one (server operator)
    key_id: int | None = None  # the API key this caller signed in with (client api)


def operator(client: str = "cli") -> Caller:
    """The OS account running kb on the server: it holds the data dir and key, so it acts as admin."""
    return Caller(f"os:{getpass.getuser()}", "admin", client, None)


def actor(who: Principal) -> Actor:
    return Actor(who.name, who.role, who.client, getattr(who, "key_id", None))


def require_role(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise PermissionDenied(f"This needs the {' or '.join(roles)} role; {who.name} is {who.role}.")
