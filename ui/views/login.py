"""Sign-in page: user name and password; repeated failures lock the account (logged)."""

from __future__ import annotations

import streamlit as st

from app.services import session
from ui import common

_, middle, _ = st.columns([1, 1.2, 1])
with middle:
    st.title("kb")
    st.caption("Your organisation's private knowledge base")
    notice = st.session_state.pop(common.NOTICE_KEY, None)
    if notice:
        st.info(notice)
    with st.form("login", border=True):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
    if submitted:
        try:
            ip = st.context.ip_address
        except Exception:
            ip = None
        client = ip if isinstance(ip, str) else None  # recorded in the sign-in audit event
        try:
            user = session.sign_in(common.container(), name, password, client)
        except session.LoginError as exc:
            st.error(str(exc))
        except Exception:
            common.log.exception("sign-in failed")
            st.error("Sign-in is not possible right now because of an internal error. The server log has details.")
        else:
            st.session_state[common.USER_KEY] = user
            st.rerun()
