"""What every page shares: the process's one Container, the signed-in user, access checks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import streamlit as st

from app.errors import KbError
from app.services import session, web_sessions
from app.services.container import Container
from app.services.session import SessionUser
from app.settings import Settings
from ui import i18n

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


COOKIE = "kb_session"  # set HttpOnly by ui/server.py; read here, never written by the page
RESUMED_KEY = "kb_resumed"  # web_sessions.Resumed of this run (must_change_password, language)


def browser_cookies() -> Mapping[str, str]:
    """The cookies of the browser connection this run serves (its websocket handshake).

    A separate function so the AppTest suites can hand in a real session's cookie: AppTest has no
    browser connection to carry one.
    """
    try:
        return st.context.cookies
    except Exception:  # no browser behind this run
        return {}


def session_token() -> str | None:
    token = browser_cookies().get(COOKIE)
    return token if isinstance(token, str) and token else None


def _resume() -> web_sessions.Resumed | None:
    try:
        return web_sessions.resume(container(), session_token())
    except Exception:  # a broken database must not let anyone in
        log.exception("could not check the browser session")
        return None


_FRESH_KEY = "kb_cookie_checked"  # digest of the cookie app.py checked in this very run; popped by require()


def end_of_run() -> None:
    """app.py calls this after the page ran: a later fragment rerun must check the cookie itself."""
    st.session_state.pop(_FRESH_KEY, None)


def signed_in() -> SessionUser | None:
    """The user whose session cookie this browser connection carries, brought up to date; else None.

    Checked on every run: what this Streamlit session remembered counts for nothing without the
    cookie, so a stolen Streamlit session id reconnected from another browser gets the sign-in page.
    """
    had = st.session_state.get(USER_KEY)
    resumed = _resume()
    if resumed is None:
        if had is not None or (session_token() and not st.session_state.get(ENDED_KEY)):
            # once per ended session: widgets of the sign-in form must survive the runs after it
            _forget(keep=(i18n.LANG_KEY,))
            st.session_state[NOTICE_KEY] = i18n.t("session.ended")
            st.session_state[ENDED_KEY] = True
        return None
    if had is not None and had.name != resumed.user.name:
        _forget(keep=(i18n.LANG_KEY,))  # another user's cookie now: nothing of the last one stays
    if resumed.language and not st.session_state.get(LANG_CHOSEN_KEY):
        i18n.set_current(resumed.language)
        st.session_state[LANG_CHOSEN_KEY] = True
    st.session_state[USER_KEY] = resumed.user
    st.session_state[RESUMED_KEY] = resumed
    st.session_state[_FRESH_KEY] = web_sessions.digest(session_token() or "")
    return resumed.user


LANG_CHOSEN_KEY = "kb_lang_chosen"
ENDED_KEY = "kb_session_ended"  # the dead cookie of this connection was noticed already


def _forget(keep: tuple[str, ...] = ()) -> None:
    for key in list(st.session_state.keys()):
        if key not in keep:
            del st.session_state[key]


def end_session(user: SessionUser, reason: str) -> None:
    """Sign this browser out: the server-side session ends (audited) and this page forgets everything."""
    try:
        web_sessions.end(container(), session_token(), reason)
    except Exception:  # the audit write must not keep a user signed in
        log.exception("could not record the end of a session")
    _forget(keep=(i18n.LANG_KEY,))
    st.session_state[ENDED_KEY] = True  # the cookie this connection still sends is dead: no "session ended"
    st.session_state[CLEAR_COOKIE_KEY] = True  # the sign-in page asks the server to delete it


CLEAR_COOKIE_KEY = "kb_clear_cookie"


def clear_cookie_form() -> None:
    """POST to /kb/sign-out, which deletes the (already ended) session cookie and reloads the page."""
    st.html('<form id="kb-sign-out" method="post" action="/kb/sign-out"></form>'
            "<script>document.getElementById('kb-sign-out').submit();</script>", unsafe_allow_javascript=True)


def require(page: str) -> SessionUser:
    """The signed-in user if their role may open ``page``; otherwise the page stops here.

    Navigation already hides pages a role may not open; this second check keeps a page safe
    even when it is run some other way (a stale URL, a test, a fragment rerun, a navigation bug).
    The cookie is checked again, so a live fragment cannot outlive its session.
    """
    token = session_token()
    fresh = st.session_state.pop(_FRESH_KEY, None)
    if token and fresh == web_sessions.digest(token) and st.session_state.get(RESUMED_KEY) is not None:
        resumed = st.session_state[RESUMED_KEY]  # app.py checked this same cookie moments ago, in this run
    else:
        resumed = _resume()
    user = resumed.user if resumed is not None else None
    if not session.may_open(user, page):
        st.error(i18n.t("access.denied"))
        st.stop()
    assert user is not None
    return user


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Show a KbError's message as is; log anything else and show a short, safe message."""
    try:
        yield
    except KbError as exc:
        st.error(i18n.message(str(exc)))
    except Exception:
        log.exception("%s failed", action)
        st.error(i18n.t("error.internal", action=action))


def fmt_time(ts) -> str:
    """A timestamp in local time, written the way the interface language writes dates."""
    return i18n.fmt_datetime(ts)


def flash(message: str) -> None:
    """Show ``message`` (already inert Markdown) once, on the next run of the page."""
    st.session_state[FLASH_KEY] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message, icon=":material/check_circle:")
