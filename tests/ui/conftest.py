"""AppTest fixtures: a real, initialised kb the pages reach through KB_ environment settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import accounts
from app.services import web_sessions
from app.services.session import SessionUser, allowed_pages
from ui import common

UI = Path(__file__).resolve().parents[2] / "ui"
PASSWORDS = {"admin": "admin-password-1", "sam": "staff-password-1", "audrey": "audit-password-1"}
ROLES = {"admin": "admin", "sam": "staff", "audrey": "auditor"}


@pytest.fixture
def kb(container, monkeypatch):
    """The shared `container` plus staff 'sam', auditor 'audrey' and collection 'handbook' (read by staff)."""
    for key in [k for k in __import__("os").environ if k.startswith("KB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("KB_DATA_DIR", str(container.settings.data_dir))
    monkeypatch.setenv("KB_DATABASE__URL", container.settings.database_url)
    with container.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", PASSWORDS["sam"])
        accounts.add_user(s, "audrey", "auditor", PASSWORDS["audrey"])
        accounts.add_collection(s, "handbook", "Policies")
        accounts.grant(s, "handbook", role="staff")
    return container


# The cookies of the simulated browser. AppTest has no browser connection to carry a cookie, so the
# pages read this jar instead (common.browser_cookies); the sessions in it are real web_sessions rows.
COOKIES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def browser_cookies(monkeypatch):
    COOKIES.clear()
    monkeypatch.setattr(common, "browser_cookies", lambda: COOKIES)
    yield COOKIES
    COOKIES.clear()


def browser_session(name: str, idle_s: float = 0.0) -> str:
    """A real session for ``name`` (as if signed in ``idle_s`` seconds ago), its token in the cookie jar."""
    c = common.container()
    when = time.time() - idle_s
    token = web_sessions.complete(c, web_sessions.begin(c, session_user(name), now=when), now=when)
    assert token
    COOKIES[common.COOKIE] = token
    return token


def session_user(name: str, idle_s: float = 0.0) -> SessionUser:
    now = time.time()
    role = ROLES[name]
    return SessionUser(name, role, role != "auditor", now - idle_s, now - idle_s)


def app(script: str = "app.py", user: str | None = None, idle_s: float = 0.0) -> AppTest:
    """An AppTest of ``ui/<script>``, signed in as ``user`` (no sign-in when None)."""
    at = AppTest.from_file(str(UI / script), default_timeout=60)
    if user is not None:
        browser_session(user, idle_s)
    return at


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def page_files(role: str, can_chat: bool = True) -> dict[str, str]:
    files = {"chat": "views/chat.py", "documents": "views/documents.py", "users": "views/users.py",
             "query_log": "views/query_log.py"}
    allowed = allowed_pages(role, can_chat)
    return {k: v for k, v in files.items() if k in allowed}
