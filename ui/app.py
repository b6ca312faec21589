"""kb web UI entry point (`kb serve` runs ui/server.py, whose st.App serves this script).

Only the pages the signed-in user's role allows are registered with st.navigation, so any other
page's URL leads to the user's default page; each page checks the role again itself. Who is signed
in comes from the HttpOnly session cookie on every run (ui/common.signed_in), never from what this
Streamlit session remembers.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run ui/app.py` puts ui/ first on sys.path, where this very file would shadow the `app`
# package. The project root goes in front of it.
_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from app.services import chat, session, web_sessions  # noqa: E402
from ui import common, i18n  # noqa: E402
from ui.i18n import t  # noqa: E402
from ui.safe_text import safe_label  # noqa: E402

st.set_page_config(page_title="kb", page_icon=":material/menu_book:", layout="wide",
                   menu_items={"Get help": None, "Report a bug": None, "About": t("app.about")})

# page key -> (script, title key, icon, url path); every page key a role may open needs an entry
PAGE_SPECS = {
    session.CHAT: ("views/chat.py", "nav.chat", ":material/chat:", "chat"),
    session.DOCUMENTS: ("views/documents.py", "nav.documents", ":material/folder_open:", "documents"),
    session.USERS: ("views/users.py", "nav.users", ":material/group:", "users"),
    session.QUERY_LOG: ("views/query_log.py", "nav.query_log", ":material/policy:", "query-log"),
    session.RETRIEVAL_TEST: ("views/retrieval_test.py", "nav.retrieval_test", ":material/troubleshoot:",
                             "retrieval-test"),
    session.DASHBOARD: ("views/dashboard.py", "nav.dashboard", ":material/monitoring:", "dashboard"),
}
ACCOUNT = ("views/account.py", "nav.account", ":material/manage_accounts:", "account")  # every signed-in user


def _page(spec: tuple[str, str, str, str], default: bool = False) -> st.Page:
    script, title, icon, url = spec
    return st.Page(script, title=t(title), icon=icon, url_path=url, default=default)


def default_page(user: session.SessionUser, must_change_password: bool) -> str | None:
    """Where a user lands: their own account page while they must change the first password; an admin
    with no collection to ask yet lands on Documents rather than an empty chat; otherwise the first page."""
    if must_change_password:
        return "account"
    if user.role == "admin" and session.DOCUMENTS in user.pages:
        try:
            if not chat.readable_collections(common.container(), user.name):
                return session.DOCUMENTS
        except Exception:
            common.log.exception("could not read the collections")
    return None


def sidebar(user: session.SessionUser) -> None:
    with st.sidebar:
        role = t("role." + user.role) if "role." + user.role in i18n.STRINGS else user.role
        st.markdown(f"**{safe_label(user.name)}** · {safe_label(role)}")
        codes = list(i18n.LANGS)
        picked = st.segmented_control(t("sidebar.language"), codes, default=i18n.current(),
                                      format_func=i18n.LANG_NAMES.get, key="sidebar_lang")
        if picked and picked != i18n.current():
            i18n.set_current(picked)
            st.session_state[common.LANG_CHOSEN_KEY] = True
            try:
                web_sessions.set_language(common.container(), common.session_token(), picked)
            except Exception:  # the switch still works for this session
                common.log.exception("could not remember the language")
            st.rerun()
        if st.button(t("sidebar.sign_out"), icon=":material/logout:", key="sign_out"):
            common.end_session(user, "logout")
            st.rerun()


user = common.signed_in()
if user is None:
    # Every page's address shows the sign-in form, so a bookmarked page opens after signing in
    # (when the role allows it; otherwise Streamlit says the page does not exist and shows the default).
    login = [st.Page("views/login.py", title=t("nav.sign_in"), icon=":material/login:", url_path="login",
                     default=True)]
    login += [st.Page("views/login.py", title=t("nav.sign_in"), url_path=spec[3])
              for spec in (*PAGE_SPECS.values(), ACCOUNT)]
    page = st.navigation(login, position="hidden")
else:
    resumed = st.session_state.get(common.RESUMED_KEY)
    must_change = bool(getattr(resumed, "must_change_password", False))
    landing = default_page(user, must_change)
    keys = [k for k in user.pages if k in PAGE_SPECS]
    if landing == session.DOCUMENTS:
        keys = [session.DOCUMENTS, *[k for k in keys if k != session.DOCUMENTS]]
    pages = [_page(PAGE_SPECS[k], default=(i == 0 and landing != "account")) for i, k in enumerate(keys)]
    pages.append(_page(ACCOUNT, default=landing == "account" or not pages))
    page = st.navigation(pages)
    sidebar(user)
    if must_change and page.title != t(ACCOUNT[1]):  # (a default page has no url_path)
        st.warning(t("account.first_admin"), icon=":material/key:")
        st.page_link(pages[-1], label=t("account.change_password"), icon=":material/key:")
try:
    page.run()
finally:
    common.end_of_run()
