"""My account (every signed-in user): change your own password; the first admin is sent here."""

from __future__ import annotations

import streamlit as st

from app.errors import KbError
from app.services import web_sessions
from ui import common, i18n
from ui.i18n import t

user = st.session_state.get(common.USER_KEY)
resumed = st.session_state.get(common.RESUMED_KEY)
if user is None or resumed is None or common.session_token() is None:
    st.error(t("access.denied"))
    st.stop()
st.title(t("account.title"))
common.show_flash()
st.caption(t("account.signed_in_since", when=common.fmt_time(user.signed_in_at)))
if resumed.must_change_password:
    st.warning(t("account.first_admin"), icon=":material/key:")
st.subheader(t("account.change_password"))
with st.form("own_password", clear_on_submit=True):
    current = st.text_input(t("account.current"), type="password", autocomplete="current-password")
    new = st.text_input(t("account.new"), type="password", autocomplete="new-password")
    again = st.text_input(t("account.repeat"), type="password", autocomplete="new-password")
    go = st.form_submit_button(t("account.submit"), type="primary", icon=":material/key:")
if go:
    if new != again:
        st.error(t("account.mismatch"))
    else:
        try:
            web_sessions.change_password(common.container(), common.session_token(), current, new)
        except KbError as exc:
            st.error(i18n.message(str(exc)))
        except Exception:
            common.log.exception("changing the own password failed")
            st.error(t("error.internal", action=t("account.action")))
        else:
            common.flash(t("account.changed"))
            st.rerun()
