"""kb web UI entry point (`kb serve` runs it with `streamlit run`).

Only the pages the signed-in user's role allows are registered with st.navigation, so any other
page's URL leads to the user's default page; each page checks the role again itself.
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

from app.services import session  # noqa: E402
from ui import common  # noqa: E402
from ui.safe_text import safe_label  # noqa: E402

st.set_page_config(page_title="kb", page_icon=":material/menu_book:", layout="wide",
                   menu_items={"Get help": None, "Report a bug": None, "About": "kb: a private knowledge base."})

PAGES = {
    session.CHAT: st.Page("views/chat.py", title="Chat", icon=":material/chat:", url_path="chat"),
    session.DOCUMENTS: st.Page("views/documents.py", title="Documents", icon=":material/folder_open:",
                               url_path="documents"),
    session.USERS: st.Page("views/users.py", title="Users & access", icon=":material/group:", url_path="users"),
    session.QUERY_LOG: st.Page("views/query_log.py", title="Query log", icon=":material/policy:",
                               url_path="query-log"),
    session.RETRIEVAL_TEST: st.Page("views/retrieval_test.py", title="Retrieval test", icon=":material/troubleshoot:",
                                    url_path="retrieval-test"),
    session.DASHBOARD: st.Page("views/dashboard.py", title="Dashboard", icon=":material/monitoring:",
                               url_path="dashboard"),
}

user = common.signed_in()
if user is None:
    # Every page's address shows the sign-in form, so a bookmarked page opens after signing in
    # (when the role allows it; otherwise Streamlit says the page does not exist and shows the default).
    login = [st.Page("views/login.py", title="Sign in", icon=":material/login:", url_path="login", default=True)]
    login += [st.Page("views/login.py", title="Sign in", url_path=p.url_path) for p in PAGES.values()]
    page = st.navigation(login, position="hidden")
else:
    page = st.navigation([PAGES[key] for key in user.pages])
    with st.sidebar:
        st.markdown(f"**{safe_label(user.name)}** · {user.role}")
        if st.button("Sign out", icon=":material/logout:", key="sign_out"):
            common.end_session(user, "logout")
            st.rerun()
page.run()
