"""The product in a real browser: admin uploads, staff asks, auditor finds the question.

Runs `kb serve` (worker + UI) with the real embedder, PII scrubber and SmolLM2, and drives
headless Debian chromium with Playwright. Screenshots of every page go to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, USERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DOCS = [FIXTURES / "docs" / "pypdf" / "crazyones.pdf", FIXTURES / "docs" / "unstructured" / "handbook-1p.docx"]
XSS_DOC = FIXTURES / "ui" / "parking-note.txt"
QUESTION = "Who appoints and supervises standing trustees?"
XSS_QUESTION = "When are parking permits renewed?"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(700)  # expanders and toasts animate
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_page(page, address: str) -> None:
    """``page.goto``, again once should the app's own late navigation (a sign-out reload) abort it."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.goto(address)
    except PlaywrightError as exc:
        if "ERR_ABORTED" not in str(exc):
            raise
        page.wait_for_load_state()
        page.goto(address)


def sign_in(page, url: str, user: str, path: str = "") -> None:
    """Open ``url/path`` in a new browser session (Streamlit sessions end on reload) and sign in."""
    open_page(page, f"{url}/{path}")
    page.get_by_label("User name", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(USERS[user])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"{user} ·").wait_for()
    if path and not page.url.rstrip("/").endswith(f"/{path}"):
        # Whether the reload after signing in keeps the address or lands on the default page depends on
        # timing (Streamlit may rewrite the address of the sign-in page first): open the page again, as a
        # user following the bookmark would; the session cookie makes it a signed-in visit.
        open_page(page, f"{url}/{path}")
        page.get_by_text(f"{user} ·").wait_for()


def dismiss_page_not_found(page) -> None:
    """A role that lacks a bookmarked page gets Streamlit's "Page not found" notice over its own default
    page (the page is not registered for it at all); close it as a user would."""
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Page not found").wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")


def sign_out(page) -> None:
    """Sign out and wait for the sign-in page's POST to /kb/sign-out (which deletes the cookie) and the
    reload after it: a page opened before that reload would be aborted by it."""
    with page.expect_response(lambda r: r.url.endswith("/kb/sign-out")):
        page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Sign in").wait_for()


def wait_app_idle(page) -> None:
    """Streamlit shows a 'running' indicator while a script runs; wait until it is gone."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def ask(page, question: str, turn: int):
    """Ask and wait for the finished answer (sources, a notice or the timing line); returns its message."""
    box = page.get_by_placeholder("Ask a question about your documents")
    box.fill(question)
    box.press("Enter")
    msg = page.get_by_test_id("stChatMessage").nth(2 * turn + 1)
    done = msg.get_by_test_id("stAlert").or_(msg.get_by_text(re.compile(r"^\d+\.\d s")))
    done.first.wait_for(timeout=180_000)
    wait_app_idle(page)
    # the passages listed while the answer is written give way to the finished answer's sources
    msg.get_by_text("the answer is being written from them").wait_for(state="detached", timeout=180_000)
    return msg


def assert_inert(page) -> None:
    """Nothing from the documents or the model ran or became a live element."""
    assert page.dialogs == [], f"a dialog opened: {page.dialogs}"
    assert page.evaluate("window.__kbxss === undefined"), "injected script ran"
    main = page.locator("[data-testid='stMain']")
    assert main.locator("script").count() == 0
    assert main.locator("img[src='x']").count() == 0
    assert main.locator("img[src*='example.invalid']").count() == 0
    assert main.locator("a[href^='javascript']").count() == 0
    assert main.locator("[onerror]").count() == 0
    for region in ("stChatMessage", "stExpander"):  # no link at all where document or model text shows
        assert page.get_by_test_id(region).locator("a[href]").count() == 0


def test_admin_uploads_staff_asks_auditor_reviews(kb_server, browser_page):
    page, url = browser_page, kb_server["url"]
    started = time.monotonic()

    # --- sign-in page, and a wrong password is refused -------------------------------------
    page.goto(url)
    page.get_by_role("button", name="Sign in").wait_for()
    shot(page, "01-login")
    page.get_by_label("User name", exact=True).fill("admin")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong user name or password.").wait_for()

    # --- admin: create the staff user, upload documents, wait until indexed ----------------
    sign_in(page, url, "admin", "users")  # a bookmarked page opens right after signing in
    page.get_by_role("heading", name="Users & access").wait_for()
    nav = page.get_by_test_id("stSidebarNav")
    for title in ("Chat", "Documents", "Users & access"):
        assert nav.get_by_text(title, exact=True).is_visible()
    assert nav.get_by_text("Query log").count() == 0

    form = page.get_by_test_id("stForm").filter(has_text="Add a user")
    form.get_by_label("User name", exact=True).fill("sam")
    form.get_by_label("Password", exact=True).fill(USERS["sam"])
    form.get_by_role("button", name="Add user").click()
    page.get_by_text("User sam added.").wait_for()
    wait_app_idle(page)
    shot(page, "02-users")
    page.get_by_role("tab", name="Collections and grants").click()
    page.get_by_role("button", name="Save and re-index").wait_for()  # what each collection scrubs, and a change
    shot(page, "02b-collections")

    nav.get_by_text("Documents").click()
    page.get_by_role("heading", name="Documents", exact=True).wait_for()
    page.locator(".kbup input[type=file][data-kind=files]").set_input_files([str(p) for p in [*DOCS, XSS_DOC]])
    for p in [*DOCS, XSS_DOC]:
        page.get_by_text(p.name).first.wait_for()
    page.get_by_role("button", name="Upload and index").click()
    page.get_by_text(re.compile(r"3 file\(s\) received into “handbook”: 3 queued")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Last upload: 3 of 3 file\(s\) processed — all done")).wait_for(timeout=150_000)
    wait_app_idle(page)
    shot(page, "03-documents")
    indexed = page.get_by_test_id("stMetric").filter(has_text="Indexed").get_by_test_id("stMetricValue")
    assert indexed.inner_text().strip() == "3", f"indexed: {indexed.inner_text()}\n{kb_server['log'].read_text()}"
    sign_out(page)

    # --- staff: only Chat; ask, see a cited answer and open the citation ------------------
    sign_in(page, url, "sam", "documents")  # not registered for staff: lands on Chat, never on Documents
    dismiss_page_not_found(page)
    page.get_by_role("heading", name="Ask the documents").wait_for()
    assert page.get_by_role("heading", name="Documents", exact=True).count() == 0
    nav_text = page.get_by_test_id("stSidebarNav").inner_text()  # Chat and My account only
    assert "Documents" not in nav_text and "Users" not in nav_text and "Query log" not in nav_text, nav_text
    answer = ask(page, QUESTION, 0)
    sources = answer.get_by_test_id("stExpander")
    assert sources.count() >= 1, answer.inner_text()
    assert answer.get_by_text("Sources — open one to see the passage").count() == 1, answer.inner_text()
    body = answer.get_by_test_id("stMarkdown").first.inner_text()
    assert re.search(r"\[\d+\]", body), f"no citation marker in the answer: {body!r}"
    first = sources.first
    assert "handbook-1p.docx" in first.inner_text()
    first.locator("summary").click()
    first.get_by_text("United States Trustee", exact=False).first.wait_for()
    shot(page, "04-chat-cited")

    # --- the XSS document is shown as text in the chat and in the citation view -----------
    # a new topic: start a new conversation, as a user would (the chat now keeps context)
    page.get_by_role("button", name="New conversation").click()
    page.get_by_test_id("stChatMessage").first.wait_for(state="detached")  # the old turns are gone
    wait_app_idle(page)
    turn = ask(page, XSS_QUESTION, 0)
    expanders = turn.get_by_test_id("stExpander")
    assert expanders.count() >= 1, turn.inner_text()
    for i in range(expanders.count()):
        expanders.nth(i).locator("summary").click()
    # Every retrieved passage is listed (cited ones first, then "also retrieved"), so the XSS note,
    # the only document about parking, is always shown: as text.
    shown = turn.inner_text().replace("\u2060", "")  # invisible joiners keep URLs from autolinking
    assert "<script>" in shown, shown
    assert "[click here](javascript:window.__kbxss=3)" in shown
    assert '<img src="x" onerror="window.__kbxss = 2">' in shown
    assert_inert(page)
    shot(page, "05-chat-xss-inert")
    sign_out(page)

    # --- auditor: only Query log; the chain is verified and the question is there --------
    sign_in(page, url, "audrey", "users")  # not registered for an auditor: lands on the Query log
    dismiss_page_not_found(page)
    page.get_by_role("heading", name="Query log").wait_for()
    assert page.get_by_role("heading", name="Users & access").count() == 0
    page.get_by_text("Chain intact").wait_for()
    page.get_by_label("Text in question or answer").fill("Who appoints and supervises")
    page.get_by_label("Text in question or answer").press("Enter")
    wait_app_idle(page)
    page.get_by_text("Question", exact=True).wait_for()
    page.get_by_test_id("stMarkdown").filter(has_text=QUESTION).first.wait_for()
    page.get_by_text("Retrieved passages").wait_for()
    shot(page, "06-query-log")
    assert_inert(page)
    assert time.monotonic() - started < 300

    # --- kb serve stops the UI and the worker cleanly on SIGTERM --------------------------
    proc = kb_server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    log = kb_server["log"].read_text()
    assert "kb stopped" in log and "worker stopped" in log, log[-3000:]
