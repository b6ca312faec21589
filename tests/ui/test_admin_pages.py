"""Documents, Users & access and Query log pages, with the services behind them."""

from __future__ import annotations

import io
import zipfile

from sqlalchemy import select

from app import audit
from app.audit import Actor
from app.models import AuditRecord
from app.services import auditing, documents, users
from app.settings import UiSettings
from tests.ui.conftest import app, session_user, titles
from ui import common


def records(kb, action: str) -> list[AuditRecord]:
    with kb.sessions() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def zip_of(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


# --- documents -------------------------------------------------------------------------------
def test_uploads_are_streamed_capped_and_queued(kb):
    from app.services.container import Container

    small = Container(kb.settings.model_copy(update={"ui": UiSettings(max_upload_mb=0.01)}))  # ~10 KB cap
    admin = session_user("admin")
    uploads = [
        documents.Upload("../../etc/notes.txt", io.BytesIO(b"Parking permits are renewed every March.")),
        documents.Upload("folder.zip", zip_of({"policies/a.txt": b"alpha policy text", "policies/b.md": b"# Beta"})),
        documents.Upload("big.txt", io.BytesIO(b"x" * 20_000)),
    ]
    results = documents.save_uploads(small, admin, uploads, "handbook")
    by_source = {r.source: r for r in results}
    assert by_source["etc/notes.txt"].outcome == "queued"  # confined: ".." parts are dropped
    assert {"folder.zip!policies/a.txt", "folder.zip!policies/b.md"} <= set(by_source)
    assert by_source["big.txt"].outcome == "too_large" and "upload limit" in by_source["big.txt"].reason
    docs = documents.list_docs(kb, session_user("admin"))
    assert sorted(d.source for d in docs) == ["etc/notes.txt", "folder.zip!policies/a.txt", "folder.zip!policies/b.md"]
    assert documents.progress(docs) == (0, 3)
    assert records(kb, "docs.upload")[0].details == {"files": 4, "queued": 3}
    # the same files again: nothing new
    note = documents.Upload("etc/notes.txt", io.BytesIO(b"Parking permits are renewed every March."))
    again = documents.save_uploads(kb, admin, [note], "handbook")
    assert [r.outcome for r in again] == ["unchanged"]


def test_folder_uploads_keep_their_relative_paths_safely(kb):
    admin = session_user("admin")
    uploads = [documents.Upload("policies/hr/leave.txt", io.BytesIO(b"leave policy")),
               documents.Upload("policies/../../../escape.txt", io.BytesIO(b"tries to climb out")),
               documents.Upload("policies/.DS_Store", io.BytesIO(b"junk")),
               documents.Upload("policies/.env", io.BytesIO(b"TOKEN=1")),
               documents.Upload("policies/.git/config", io.BytesIO(b"[core]"))]
    results = documents.save_uploads(kb, admin, uploads, "handbook")
    assert sorted(r.source for r in results) == ["policies/.DS_Store", "policies/.env", "policies/.git/config",
                                                 "policies/escape.txt", "policies/hr/leave.txt"]
    skipped = {r.source: r.reason for r in results if r.outcome == "skipped"}  # an outcome each, none vanish
    assert "operating-system metadata" in skipped["policies/.DS_Store"]
    assert "hidden" in skipped["policies/.env"] and "'.git'" in skipped["policies/.git/config"]
    assert all(r.document_id is None for r in results if r.outcome == "skipped")  # nothing stored for them
    assert documents.safe_relative_path("/abs/../x/./y.pdf").as_posix() == "abs/x/y.pdf"


def test_safe_file_name_never_leaves_the_folder():
    assert documents.safe_file_name("..\\..\\windows\\x.docx") == "x.docx"
    assert documents.safe_file_name("/etc/passwd") == "passwd"
    assert documents.safe_file_name("..") == "upload"
    assert documents.safe_file_name("a\x00b:c.pdf") == "a_b_c.pdf"


def test_documents_page_lists_searches_retries_and_deletes(kb):
    admin = session_user("admin")
    documents.save_uploads(kb, admin, [documents.Upload("alpha.txt", io.BytesIO(b"alpha")),
                                       documents.Upload("beta.txt", io.BytesIO(b"beta"))], "handbook")
    at = app(user="admin").run()
    at.switch_page("views/documents.py").run()
    assert titles(at) == ["Documents"] and not at.exception
    table = at.dataframe[0].value
    assert sorted(table["file"]) == ["alpha.txt", "beta.txt"]
    assert set(table["status"]) == {"queued"}
    assert [m.value for m in at.metric][:2] == ["0", "2"]  # indexed, waiting
    at.text_input(key="doc_search").input("beta").run()
    assert list(at.dataframe[0].value["file"]) == ["beta.txt"]
    # queued documents cannot be retried; deleting needs the confirmation box
    retry = next(b for b in at.button if b.label == "Retry")
    delete = next(b for b in at.button if b.label == "Delete")
    assert retry.disabled and delete.disabled
    doc_id = at.selectbox[-1].value
    at.checkbox(key=f"sure_{doc_id}").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert any("Deleted document" in s.value for s in at.success)
    assert [d.source for d in documents.list_docs(kb, session_user("admin"))] == ["alpha.txt"]
    assert records(kb, "docs.delete")[0].actor == "admin"


# --- users & access ----------------------------------------------------------------------------
def test_users_page_adds_a_user_and_shows_the_generated_password_once(kb):
    at = app(user="admin").run()
    at.switch_page("views/users.py").run()
    assert titles(at) == ["Users & access"]
    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["User name"].input("newbie")
    next(b for b in at.button if b.label == "Add user").click().run()
    assert not at.exception
    assert any("User newbie added." in s.value for s in at.success)
    password = at.code[0].value
    from app.services.session import sign_in

    assert sign_in(kb, "newbie", password).role == "staff"
    at.run()
    assert not at.code  # shown once only
    assert records(kb, "user.create")[-1].target == "newbie"


def test_admin_cannot_lock_out_the_last_admin(kb):
    import pytest

    from app.errors import KbError

    with pytest.raises(KbError, match="own account"):
        users.set_disabled(kb, session_user("admin"), "admin", True)
    users.create_user(kb, session_user("admin"), "root2", "admin", "second-admin-pw")
    users.set_role(kb, session_user("admin"), "root2", "staff")  # fine: another admin remains
    assert {u.name: u.role for u in users.users(kb, session_user("admin"))}["root2"] == "staff"
    assert records(kb, "user.role")[0].details == {"role": "staff", "was": "admin"}


def test_grants_page_grants_and_revokes(kb):
    admin = session_user("admin")
    users.create_collection(kb, admin, "board", "Board minutes")
    users.grant(kb, admin, "board", user="audrey")
    assert {c.name: c.grants for c in users.collections(kb, session_user("admin"))}["board"] == ["user:audrey(r)"]
    assert users.revoke(kb, admin, "board", user="audrey") == 1
    assert {c.name: c.grants for c in users.collections(kb, session_user("admin"))}["board"] == []
    at = app(user="admin").run()
    at.switch_page("views/users.py").run()
    assert "board" in list(at.dataframe[1].value["collection"])


def test_collections_are_created_with_a_pii_policy_and_changed_from_the_page(kb):
    at = app(user="admin").run()
    at.switch_page("views/users.py").run()
    next(t for t in at.text_input if t.label == "Name").input("laws")
    pii_boxes = [b for b in at.selectbox if b.label == "Personal data to scrub"]
    assert pii_boxes[0].options == ["All (names and addresses too)", "Identifiers only (public documents)"]
    pii_boxes[0].set_value("identifiers")
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception
    assert {c.name: c.pii for c in users.collections(kb, session_user("admin"))}["laws"] == "identifiers"
    table = at.dataframe[1].value
    assert list(table[table["collection"] == "laws"]["pii"]) == ["Identifiers only (public documents)"]
    at.selectbox(key="pii_collection").set_value("laws")
    at.selectbox(key="pii_policy").set_value("all")
    next(b for b in at.button if b.label == "Save and re-index").click().run()
    assert not at.exception
    assert any("laws now scrubs: All" in s.value for s in at.success)
    assert {c.name: c.pii for c in users.collections(kb, session_user("admin"))}["laws"] == "all"
    assert records(kb, "collection.pii")[-1].details == {"pii": "all", "was": "identifiers", "requeued": 0}


def test_documents_page_says_what_the_chosen_collection_scrubs(kb):
    users.create_collection(kb, session_user("admin"), "laws", pii="identifiers")
    at = app(user="admin").run()
    at.switch_page("views/documents.py").run()
    at.selectbox(key="upload_collection").set_value("laws").run()
    assert any("scrubbed from this collection's documents: Identifiers only" in c.value for c in at.caption)
    at.selectbox(key="upload_collection").set_value("➕ New collection…").run()
    assert any("A new collection scrubs all personal data" in c.value for c in at.caption)


# --- query log ------------------------------------------------------------------------------
def _ask_record(kb, question: str, answer: str) -> int:
    with kb.sessions.begin() as s:
        rec = audit.append(s, kb.vault, kind="query", action="ask", actor=Actor("sam", "staff", "ui"),
                           details={"retrieved": [], "citations": [1], "timings": {"total_ms": 12.0}},
                           sealed={"question": question, "answer": answer})
        return rec.seq


def test_query_log_lists_filters_and_opens_a_record_with_a_verified_chain(kb):
    _ask_record(kb, "Who appoints trustees?", "The United States Trustee [1].")
    seq = _ask_record(kb, "When are permits renewed? <script>x()</script>", "Every March [1](javascript:y).")
    at = app(user="audrey").run()
    assert titles(at) == ["Query log"] and not at.exception
    assert any("Chain intact" in s.value for s in at.success)
    assert auditing.last_check(kb) is not None and auditing.last_check(kb).ok
    table = at.dataframe[0].value
    assert list(table["#"]) == [seq, seq - 1]
    at.text_input[0].input("trustees").run()
    assert list(at.dataframe[0].value["question"]) == ["Who appoints trustees?"]
    at.text_input[0].input("permits").run()
    texts = [m.value for m in at.markdown]
    assert "When are permits renewed? &lt;script&gt;x()&lt;/script&gt;" in texts
    assert "Every March \\[1\\](javascript\u2060:y)." in texts
    next(b for b in at.button if b.label == "Prepare CSV export").click().run()
    assert not at.exception


def test_query_log_export_is_csv_of_the_filtered_records(kb):
    _ask_record(kb, "=cmd|' /C calc'!A0", "answer")
    data, n = auditing.export_csv(kb, session_user("audrey"), kind="query")
    text = data.decode("utf-8-sig")
    assert n == 1
    assert text.splitlines()[0].startswith("seq,")
    assert "'=cmd" in text  # not a live spreadsheet formula


def test_chain_tampering_is_shown_as_broken(kb):
    """Someone with database rights drops the append-only guard and edits a record."""
    from sqlalchemy import text, update

    seq = _ask_record(kb, "q", "a")
    with kb.sessions.begin() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            s.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        s.execute(update(AuditRecord).where(AuditRecord.seq == seq).values(action="tampered"))
    at = app(user="audrey").run()
    assert any("Chain broken" in e.value for e in at.error)
    assert common.USER_KEY in at.session_state
