"""Issue 18 part B in a real browser: the streaming uploader (files and a folder), the retrieval test page
ranking a known chunk first, feedback landing in the audit log as kind feedback tied to the answer, the
dashboard rendering, and the upload route refusing an oversized body before reading it.

Same harness as test_browser.py: `kb serve` with the real embedder, scrubber and SmolLM2, headless chromium.
"""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.e2e.conftest import USERS
from tests.e2e.test_browser import DOCS, QUESTION, ask, shot, sign_in, sign_out, wait_app_idle
from tests.ui.test_upload_route import read_reply

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FOLDER_FILES = 40


def _container(kb_server):
    from app.services.container import Container

    data = kb_server["data"]
    return Container(make_settings(data, f"sqlite:///{data / 'kb.sqlite3'}"))


@pytest.fixture(scope="module")
def staff(kb_server):
    from app import accounts

    c = _container(kb_server)
    with c.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", USERS["sam"])
    c.engine.dispose()


def test_uploader_streams_files_and_a_folder(kb_server, browser_page, staff, tmp_path):
    page, url = browser_page, kb_server["url"]
    sign_in(page, url, "admin", "documents")
    page.get_by_role("heading", name="Documents", exact=True).wait_for()
    files = page.locator(".kbup input[type=file][data-kind=files]")
    files.set_input_files([str(p) for p in DOCS])
    page.get_by_text("2 file(s) chosen").wait_for()
    started = time.monotonic()
    page.get_by_role("button", name="Upload and index").click()
    # the first upload loads the file-name scrubber in the UI process: allow for it on a loaded machine
    page.get_by_text(re.compile(r"2 file\(s\) received into “handbook”: 2 queued")).wait_for(timeout=300_000)
    for p in DOCS:  # one row per file, with its outcome
        page.get_by_test_id("kbUploadList").get_by_role("listitem").filter(has_text=p.name) \
            .filter(has_text="queued for indexing").wait_for()
    # the first document also waits for the worker to load its models (minutes on a loaded 2-core machine)
    page.get_by_text(re.compile(r"Last upload: 2 of 2 file\(s\) processed — all done")).wait_for(timeout=480_000)
    wait_app_idle(page)
    shot(page, "b01-uploader-files")

    # A folder of many files, into a new collection: one request per file, progress per file.
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    for i in range(FOLDER_FILES):
        (folder / ("sub" if i % 2 else "") / f"note-{i:03d}.txt").write_text(f"Meeting note {i}: room {i % 7}.")
    page.get_by_label("Collection", exact=True).first.click()  # the upload form's (the filter comes later)
    page.get_by_role("option", name=re.compile("New collection")).click()
    page.get_by_label("New collection name").fill("notes")
    page.get_by_label("New collection name").press("Enter")
    wait_app_idle(page)
    page.wait_for_timeout(1500)  # the rerun that hands the new name to the uploader may start a moment later
    wait_app_idle(page)
    page.locator(".kbup input[type=file][data-kind=folder]").set_input_files(str(folder))
    page.get_by_text(f"{FOLDER_FILES} file(s) chosen").wait_for()
    t0 = time.monotonic()
    page.get_by_role("button", name="Upload and index").click()
    page.get_by_text(re.compile(rf"{FOLDER_FILES} file\(s\) received into “notes”: {FOLDER_FILES} queued")) \
        .wait_for(timeout=120_000)
    folder_s = time.monotonic() - t0
    rows = page.get_by_test_id("kbUploadList").get_by_role("listitem")
    assert rows.count() == FOLDER_FILES
    assert rows.filter(has_text="notes/sub/note-001.txt").filter(has_text="queued for indexing").count() == 1
    shot(page, "b02-uploader-folder")
    print(f"uploaded {FOLDER_FILES} files in {folder_s:.1f} s (2 files + indexing: {time.monotonic() - started:.1f} s)")

    # The route refuses a body over ui.max_upload_mb from its Content-Length, before reading any of it.
    cookie = next(c for c in page.context.cookies() if c["name"] == "kb_session")
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST /kb/upload HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {url}\r\nX-Kb-Upload: 1\r\n"
                      f"X-Kb-File-Name: huge.bin\r\nX-Kb-Collection: notes\r\nCookie: kb_session={cookie['value']}\r\n"
                      f"Content-Type: application/octet-stream\r\nContent-Length: {50 * 2**30}\r\n\r\n").encode())
        reply = read_reply(sock)  # no body sent: a reply now means it did not wait for one
    assert reply.startswith("HTTP/1.1 413") and "too_large" in reply, reply
    # ... and a request from another site, or without the session, is refused.
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST /kb/upload HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://evil.example\r\n"
                      f"X-Kb-Upload: 1\r\nCookie: kb_session={cookie['value']}\r\nContent-Length: 0\r\n\r\n").encode())
        assert read_reply(sock).startswith("HTTP/1.1 403")
    sign_out(page)


def test_retrieval_test_ranks_the_known_chunk_first(kb_server, browser_page):
    page, url = browser_page, kb_server["url"]
    sign_in(page, url, "admin", "retrieval-test")
    page.get_by_role("heading", name="Retrieval test").wait_for()
    page.get_by_label("Query", exact=True).fill(QUESTION)
    page.get_by_role("button", name="Test retrieval").click()
    wait_app_idle(page)
    page.get_by_text("A question would be answered").wait_for()
    first = page.get_by_test_id("stExpander").first
    first.locator("summary").click()
    assert first.get_by_text("handbook-1p.docx").count() >= 1, first.inner_text()
    first.get_by_text("United States Trustee", exact=False).first.wait_for()
    assert "1. ✓" in first.locator("summary").inner_text()  # ranked first, and the gate would pass it
    shot(page, "b03-retrieval-test")
    sign_out(page)


def test_feedback_lands_in_the_audit_log(kb_server, browser_page, staff):
    from app.models import AuditRecord

    page, url = browser_page, kb_server["url"]
    sign_in(page, url, "sam")  # staff have one page, the default (no /chat address)
    page.get_by_role("heading", name="Ask the documents").wait_for()
    answer = ask(page, QUESTION, 0)
    helpful = answer.get_by_role("button", name="Helpful", exact=True)
    not_helpful = answer.get_by_role("button", name="Not helpful", exact=True)
    assert helpful.count() == 1 and not_helpful.count() == 1
    not_helpful.click()
    answer.get_by_text("Thanks: recorded as not helpful.").wait_for()
    answer.get_by_label("Comment (optional)").fill("It should name the Attorney General.")
    answer.get_by_role("button", name="Send comment").click()
    answer.get_by_text("Comment recorded.").wait_for()
    shot(page, "b04-feedback")

    c = _container(kb_server)
    with c.sessions() as s:
        asked = s.scalars(select(AuditRecord).where(AuditRecord.action == "ask", AuditRecord.actor == "sam")).all()
        rated = s.scalars(select(AuditRecord).where(AuditRecord.kind == "feedback").order_by(AuditRecord.seq)).all()
    c.engine.dispose()
    assert len(asked) == 1 and len(rated) == 2, (asked, rated)
    for rec in rated:  # the rating, then the rating with its comment: both tied to the question's record
        assert rec.actor == "sam" and rec.target == str(asked[0].seq) and rec.details["answer_seq"] == asked[0].seq
        assert rec.details["rating"] == "down"
    assert rated[1].details["commented"] and rated[1].payload_sealed
    sign_out(page)

    # The auditor finds it in the query log, with the comment.
    sign_in(page, url, "audrey")  # an auditor without grants has one page: the query log
    page.get_by_role("heading", name="Query log").wait_for()
    page.get_by_role("combobox", name="Show").click()
    page.get_by_role("option", name="feedback", exact=True).click()
    wait_app_idle(page)
    page.get_by_text(f"on the answer of record #{asked[0].seq}").wait_for()
    page.get_by_text("It should name the Attorney General.").wait_for()
    shot(page, "b05-feedback-in-query-log")
    sign_out(page)


def test_dashboard_renders(kb_server, browser_page):
    page, url = browser_page, kb_server["url"]
    sign_in(page, url, "admin", "dashboard")
    page.get_by_role("heading", name="Dashboard").wait_for()
    t0 = time.monotonic()
    wait_app_idle(page)
    charts = page.get_by_test_id("stVegaLiteChart")
    charts.nth(4).wait_for(timeout=30_000)
    rendered_s = time.monotonic() - t0
    assert charts.count() == 5
    metrics = page.get_by_test_id("stMetric")
    assert metrics.filter(has_text="Answer time p50").count() == 1
    # after the feedback test: one "not helpful"; run alone: nothing rated yet
    assert metrics.filter(has_text="Rated helpful").get_by_test_id("stMetricValue").inner_text() in ("0%", "—")
    shot(page, "b06-dashboard")
    print(f"dashboard rendered in {rendered_s:.2f} s after the heading")
    sign_out(page)
