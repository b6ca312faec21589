"""Sign-in page: user name and password; repeated failures lock the account (logged).

A good password does not sign this page in by itself: it gets a one-time hand-off code
(web_sessions.begin) that the browser POSTs to /kb/session (ui/server.py), which sets the HttpOnly
session cookie and reloads the page. Only then is the browser signed in, on every later run too.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import streamlit as st

from app.services import session, web_sessions
from ui import common, i18n
from ui.i18n import t

HANDOFF_KEY = "kb_handoff"  # the code to POST, kept for this run's form only
SERVER_PATH = "/kb/session"


def _next_path() -> str:
    """The page this browser asked for, so a bookmarked page opens after signing in."""
    try:
        path = urlsplit(st.context.url or "").path
    except Exception:
        path = ""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def handoff_form(code: str) -> None:
    """POST the one-time code to the server route, at once (script) or by a click (no script)."""
    st.info(t("login.finishing"))
    st.html(
        f'<form id="kb-handoff" method="post" action="{SERVER_PATH}">'
        f'<input type="hidden" name="code" value="{html.escape(code)}">'
        f'<input type="hidden" name="next" value="{html.escape(_next_path())}">'
        f'<button type="submit">{html.escape(t("login.continue"))}</button></form>'
        "<script>document.getElementById('kb-handoff').submit();</script>",
        unsafe_allow_javascript=True)


def language_switch() -> None:
    codes = list(i18n.LANGS)
    picked = st.segmented_control(t("sidebar.language"), codes, default=i18n.current(), format_func=i18n.LANG_NAMES.get,
                                  key="login_lang", label_visibility="collapsed")
    if picked and picked != i18n.current():
        i18n.set_current(picked)
        st.rerun()


_, middle, _ = st.columns([1, 1.2, 1])
with middle:
    language_switch()
    st.title("kb")
    st.caption(t("login.tagline"))
    if st.query_params.get("signin") == "expired":
        st.warning(t("login.handoff_failed"))
        del st.query_params["signin"]
    notice = st.session_state.pop(common.NOTICE_KEY, None)
    if notice:
        st.info(notice)
    if st.session_state.pop(common.CLEAR_COOKIE_KEY, False):
        common.clear_cookie_form()
    code = st.session_state.pop(HANDOFF_KEY, None)
    if code:
        handoff_form(code)
        st.stop()
    with st.form("login", border=True):
        name = st.text_input(t("login.user"), key="login_name", autocomplete="username")
        password = st.text_input(t("login.password"), type="password", key="login_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button(t("login.submit"), type="primary", width="stretch")
    if submitted:
        try:
            ip = st.context.ip_address
        except Exception:
            ip = None
        client = ip if isinstance(ip, str) else None  # recorded in the sign-in audit event
        try:
            user = session.sign_in(common.container(), name, password, client)
            st.session_state[HANDOFF_KEY] = web_sessions.begin(common.container(), user)
        except session.LoginError as exc:
            st.error(i18n.message(str(exc)))
        except Exception:
            common.log.exception("sign-in failed")
            st.error(t("login.internal"))
        else:
            st.rerun()
