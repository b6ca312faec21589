"""What every page shares: the process's one Container, the signed-in user, access checks."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from app.errors import KbError
from app.services import session
from app.services.container import Container
from app.services.session import SessionUser
from app.settings import Settings

log = logging.getLogger("kb.ui")
USER_KEY = "kb_user"
NOTICE_KEY = "kb_notice"
FLASH_KEY = "kb_flash"  # a success message that survives the rerun after a change


@st.cache_resource(show_spinner=False)
def _container(key: str, _settings: Settings) -> Container:
    return Container(_settings)


def container() -> Container:
    """One Container per process and configuration (tests run several configurations in one process)."""
    settings = Settings()
    secret = settings.crypto.master_key.get_secret_value() if settings.crypto.master_key else ""
    key = settings.model_dump_json() + hashlib.sha256(secret.encode()).hexdigest()
    return _container(key, settings)


def signed_in() -> SessionUser | None:
    """The user of this browser session, brought up to date; None (with a notice) once it expired."""
    user: SessionUser | None = st.session_state.get(USER_KEY)
    if user is None:
        return None
    c = container()
    fresh = session.touch(c, user)
    if fresh is None:
        end_session(user, "expired")
        st.session_state[NOTICE_KEY] = "Your session ended (idle too long, or the account was disabled). Sign in again."
        return None
    st.session_state[USER_KEY] = fresh
    return fresh


def end_session(user: SessionUser, reason: str) -> None:
    try:
        session.sign_out(container(), user, reason)
    except Exception:  # the audit write must not keep a user signed in
        log.exception("could not record the end of a session")
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def require(page: str) -> SessionUser:
    """The signed-in user if their role may open ``page``; otherwise the page stops here.

    Navigation already hides pages a role may not open; this second check keeps a page safe
    even when it is run some other way (a stale URL, a test, a future navigation bug).
    """
    user: SessionUser | None = st.session_state.get(USER_KEY)
    if user is not None and time.time() - user.last_seen > container().settings.ui.session_minutes * 60:
        user = None  # a live fragment must not outlive the session
    if not session.may_open(user, page):
        st.error("You do not have access to this page.")
        st.stop()
    assert user is not None
    return user


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Show a KbError's message as is; log anything else and show a short, safe message."""
    try:
        yield
    except KbError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("%s failed", action)
        st.error(f"{action} failed because of an internal error. The server log has the details.")


def fmt_time(ts) -> str:
    if ts is None:
        return ""
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S") if hasattr(ts, "astimezone") else str(ts)


def flash(message: str) -> None:
    """Show ``message`` (already inert Markdown) once, on the next run of the page."""
    st.session_state[FLASH_KEY] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message, icon=":material/check_circle:")
