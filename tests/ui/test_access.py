"""Sign-in, lockout, session timeout and role gating of every page (Streamlit AppTest)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import AuditRecord
from app.services import users, web_sessions
from tests.ui.conftest import COOKIES, PASSWORDS, app, browser_session, session_user, titles
from ui import common

TITLES = {"views/chat.py": "Ask the documents", "views/documents.py": "Documents",
          "views/users.py": "Users & access", "views/query_log.py": "Query log"}
ALL_PAGES = list(TITLES)
REACHABLE = {
    "sam": ["views/chat.py"],
    "admin": ["views/chat.py", "views/documents.py", "views/users.py"],
    "audrey": ["views/query_log.py"],
}


def actions(kb, action: str) -> list[AuditRecord]:
    with kb.sessions() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)))


HANDOFF = re.compile(r'name="code" value="([^"]+)"')


def submit_login(at, name: str, password: str):
    """Fill in the form; after a good password, do what the browser does with the hand-off form (POST
    the code to /kb/session, which sets the cookie) and reload."""
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    codes = [m.group(1) for el in at.get("html") for m in [HANDOFF.search(el.proto.body)] if m]
    if codes:
        token = web_sessions.complete(common.container(), codes[0])
        assert token
        COOKIES[common.COOKIE] = token
        at.run()
    return at


def test_signed_out_sees_only_the_sign_in_form(kb):
    at = app().run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    for page in ALL_PAGES:
        with pytest.raises(ValueError):  # not registered: no URL leads there
            at.switch_page(page)


@pytest.mark.parametrize("name", ["sam", "admin", "audrey"])
def test_sign_in_lands_on_the_role_default_page_and_logs_it(kb, name):
    at = submit_login(app().run(), name, PASSWORDS[name])
    assert not at.exception
    # the first admin still has the password set at installation: they land on My account to change it
    assert titles(at) == ["My account" if name == "admin" else TITLES[REACHABLE[name][0]]]
    assert at.session_state[common.USER_KEY].role == {"sam": "staff", "admin": "admin", "audrey": "auditor"}[name]
    assert [r.target for r in actions(kb, "login.ok")] == [name]


@pytest.mark.parametrize("name", ["sam", "admin", "audrey"])
def test_each_role_reaches_exactly_its_pages(kb, name):
    at = app(user=name).run()
    for page in ALL_PAGES:
        if page in REACHABLE[name]:
            at.switch_page(page).run()
            assert not at.exception, at.exception
            assert titles(at) == [TITLES[page]]
            assert not at.error
        else:
            with pytest.raises(ValueError):
                at.switch_page(page)


@pytest.mark.parametrize("page", ["views/documents.py", "views/users.py"])
def test_staff_session_cannot_open_an_admin_page_by_url(kb, page):
    """The page hash (what a URL selects) of an admin page, requested by a staff session: Chat is shown."""
    at = app(user="admin").run()
    at.switch_page(page).run()
    assert titles(at) == [TITLES[page]]
    browser_session("sam")  # another user's cookie in the same Streamlit session
    at.run()
    assert titles(at) == ["Ask the documents"]
    assert not [b for b in at.button if b.label in ("Upload and index", "Add user", "Reset password")]


def test_staff_session_cannot_open_the_query_log_by_url(kb):
    at = app(user="audrey").run()
    at.switch_page("views/query_log.py").run()
    assert titles(at) == ["Query log"]
    browser_session("sam")  # another user's cookie in the same Streamlit session
    at.run()
    assert titles(at) == ["Ask the documents"]


@pytest.mark.parametrize("page", ["views/documents.py", "views/users.py", "views/query_log.py"])
@pytest.mark.parametrize("name", ["sam", None])
def test_pages_refuse_a_wrong_role_even_when_run_directly(kb, page, name):
    at = app(page, user=name).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    assert not at.title  # stopped before drawing anything


def test_auditor_gets_chat_only_when_granted(kb):
    at = app(user="audrey").run()
    with pytest.raises(ValueError):
        at.switch_page("views/chat.py")
    users.grant(kb, session_user("admin"), "handbook", user="audrey")
    at.run()  # grants are read again on every run
    at.switch_page("views/chat.py").run()
    assert titles(at) == ["Ask the documents"]


def test_wrong_password_is_refused_without_saying_whether_the_user_exists(kb):
    at = submit_login(app().run(), "sam", "wrong-password-0")
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    at = submit_login(at, "nobody", "wrong-password-0")
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert common.USER_KEY not in at.session_state
    assert [r.details["why"] for r in actions(kb, "login.failed")] == ["bad password", "unknown user"]


def test_repeated_failures_lock_the_account_and_log_it(kb, monkeypatch):
    monkeypatch.setenv("KB_UI__LOCKOUT_ATTEMPTS", "3")
    at = app().run()
    for _ in range(3):
        at = submit_login(at, "sam", "wrong-password-0")
    assert "locked" in at.error[0].value
    at = submit_login(at, "sam", PASSWORDS["sam"])  # the right password no longer works
    assert "locked" in at.error[0].value
    assert common.USER_KEY not in at.session_state
    locked = actions(kb, "login.locked")
    assert len(locked) == 1 and locked[0].target == "sam" and locked[0].details["attempts"] == 3
    users.reset_password(kb, session_user("admin"), "sam", "new-password-123")  # an admin unlocks
    at = submit_login(at, "sam", "new-password-123")
    assert titles(at) == ["Ask the documents"]


def test_idle_session_expires_with_a_notice_and_a_log_record(kb):
    at = app(user="sam", idle_s=31 * 60).run()  # default timeout: 30 minutes
    assert common.USER_KEY not in at.session_state
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert "session ended" in at.info[0].value
    assert [r.target for r in actions(kb, "session.expired")] == ["sam"]


def test_active_session_is_kept_and_refreshed(kb):
    at = app(user="sam", idle_s=29 * 60).run()
    assert titles(at) == ["Ask the documents"]
    assert at.session_state[common.USER_KEY].last_seen > session_user("sam", 60).last_seen


def test_disabled_account_is_signed_out_at_the_next_click(kb):
    at = app(user="sam").run()
    assert titles(at) == ["Ask the documents"]
    users.set_disabled(kb, session_user("admin"), "sam", True)
    at.run()
    assert common.USER_KEY not in at.session_state
    assert "Sign in" in [b.label for b in at.button]


def test_sign_out_clears_the_session(kb):
    at = app(user="admin").run()
    next(b for b in at.button if b.label == "Sign out").click()
    at.run()
    assert common.USER_KEY not in at.session_state
    assert [r.target for r in actions(kb, "session.logout")] == ["admin"]


def test_sign_in_rows_show_no_account_name_in_the_question_column(kb):
    """A failed sign-in's target is what was typed as the user name (sometimes a password)."""
    submit_login(app().run(), "sam", "wrong-password-0")
    submit_login(app().run(), "sam", PASSWORDS["sam"])
    users.create_collection(kb, session_user("admin"), "minutes")  # an admin event: its target stays
    at = app(user="audrey").run()
    next(s for s in at.selectbox if s.label == "Show").select("").run()  # all events
    table = at.dataframe[0].value
    events = dict(zip(table["event"], table["question"], strict=False))
    assert {"login.failed", "login.ok", "collection.create"} <= set(events)
    assert events["login.failed"] == "" and events["login.ok"] == ""
    assert events["collection.create"] == "minutes"


def test_an_admin_without_collections_lands_on_documents(kb):
    from app.models import Collection, Grant, User

    with kb.sessions.begin() as s:  # as on a fresh install: no collection yet, own password already set
        s.query(Grant).delete()
        s.query(Collection).delete()
        s.query(User).filter(User.name == "admin").one().must_change_password = False
    at = app(user="admin").run()
    assert not at.exception
    assert titles(at) == ["Documents"]


def test_the_first_admin_is_asked_to_change_the_password_on_every_page_once(kb):
    at = app(user="admin").run()
    assert titles(at) == ["My account"]
    asked = [w.value for w in at.warning if "first admin password" in w.value]
    assert len(asked) == 1
    at.switch_page("views/documents.py").run()
    assert len([w for w in at.warning if "first admin password" in w.value]) == 1
    assert not [w for w in app(user="sam").run().warning if "first admin password" in w.value]
