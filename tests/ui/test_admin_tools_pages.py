"""Issue 18 part B pages under AppTest: the grant form's one picker, the dashboard and the retrieval test page
render for admins only, and the queue table's page still lists documents with the uploader on it."""

from __future__ import annotations

import io

from app.services import documents
from tests.ui.conftest import app, session_user, titles


def test_grant_form_shows_only_the_picker_of_the_chosen_kind(kb):
    at = app(user="admin").run()
    at.switch_page("views/users.py").run()
    assert not at.exception
    keys = {s.key for s in at.selectbox}
    assert "grant_role" in keys and "grant_user" not in keys
    at.radio(key="grant_to").set_value("a user").run()
    keys = {s.key for s in at.selectbox}
    assert "grant_user" in keys and "grant_role" not in keys
    at.selectbox(key="grant_user").set_value("audrey")  # in the form: sent with the submit below
    next(b for b in at.button if b.label == "Grant").click().run()
    assert not at.exception
    assert any("Granted handbook to audrey" in s.value for s in at.success), (
        [s.value for s in at.success], [e.value for e in at.error])


def test_dashboard_and_retrieval_test_pages_render_for_admins(kb):
    admin = session_user("admin")
    documents.save_uploads(kb, admin, [documents.Upload("alpha.txt", io.BytesIO(b"alpha"))], "handbook")
    at = app(user="admin").run()
    at.switch_page("views/dashboard.py").run()
    assert not at.exception and titles(at) == ["Dashboard"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Waiting in the queue"] == "1" and metrics["Answer time p50"] == "—"
    at.switch_page("views/retrieval_test.py").run()
    assert not at.exception and titles(at) == ["Retrieval test"]
    assert [b.label for b in at.button if b.label == "Test retrieval"]

    at.switch_page("views/documents.py").run()
    assert not at.exception and list(at.dataframe[0].value["file"]) == ["alpha.txt"]


def test_staff_cannot_open_the_admin_tools(kb):
    at = app("views/dashboard.py", user="sam").run()
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    at = app("views/retrieval_test.py", user="sam").run()
    assert [e.value for e in at.error] == ["You do not have access to this page."]
