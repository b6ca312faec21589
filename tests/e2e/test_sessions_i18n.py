"""Browser sessions and the Chinese interface in a real `kb serve` and headless chromium (issue 18).

Each test opens its own browser context (its own cookie jar), the way separate people or separate
browsers would. Screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, USERS, browser_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAFF = {"sam": "staff-password-1", "tess": "tester-password-1"}
COOKIE = "kb_session"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(600)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def server(kb_server) -> dict:
    """kb_server plus staff users this module signs in with."""
    from app import accounts
    from app.services.container import Container
    from tests.conftest import make_settings

    data = kb_server["data"]
    c = Container(make_settings(data, f"sqlite:///{data / 'kb.sqlite3'}"))
    with c.sessions.begin() as s:
        for name, password in STAFF.items():
            accounts.add_user(s, name, "staff", password)
    c.engine.dispose()
    return kb_server


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        browser_unavailable(f"Debian chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_unavailable(f"playwright is not importable: {exc}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser, locale: str = "en-US", init_script: str | None = None):
    ctx = browser.new_context(locale=locale, viewport={"width": 1300, "height": 900})
    if init_script:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    return page


def sign_in(page, url: str, user: str, password: str, path: str = "", button: str = "Sign in",
            user_label: str = "User name", password_label: str = "Password") -> None:  # noqa: S107 (a label)
    page.goto(f"{url}/{path}")
    page.get_by_label(user_label, exact=True).fill(user)
    page.get_by_label(password_label, exact=True).fill(password)
    page.get_by_role("button", name=button).click()
    page.get_by_text(f"{user} ·").wait_for(timeout=60_000)  # after the hand-off and the reload


def wait_idle(page) -> None:
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def ask(page, question: str) -> None:
    box = page.get_by_placeholder("Ask a question about your documents")
    box.fill(question)
    box.press("Enter")


def test_reload_keeps_the_session_and_the_open_conversation(server, browser):
    page = new_page(browser)
    url = server["url"]
    sign_in(page, url, "sam", STAFF["sam"])
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert COOKIE not in page.evaluate("document.cookie")  # no script can read it
    assert cookie["value"] not in page.url
    # A turn that needs no model (no collection picked), so the test does not wait for the embedder's
    # first-use warm-up; the real answers are exercised in test_browser.py.
    picker = page.get_by_test_id("stMultiSelect")
    picker.locator("input").click()
    picker.locator("input").press("Backspace")
    page.keyboard.press("Escape")
    wait_idle(page)
    question = "What is the notice period for leaving the company?"
    ask(page, question)
    page.get_by_text("Pick at least one collection to search in").wait_for()
    wait_idle(page)
    page.reload()
    page.get_by_text("sam ·").wait_for()
    page.get_by_test_id("stChatMessage").first.get_by_text(question).wait_for()
    assert page.get_by_label("User name", exact=True).count() == 0
    page.get_by_role("button", name="Export as Markdown").first.wait_for()
    shot(page, "session-after-reload")
    # signing out ends it for good: the old cookie value opens nothing any more
    old = cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    for _ in range(40):  # the sign-in page has the server delete the cookie
        if not [c for c in page.context.cookies() if c["name"] == COOKIE]:
            break
        page.wait_for_timeout(250)
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    page.context.add_cookies([{**cookie, "value": old}])  # a copy of the old cookie opens nothing
    page.reload()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.get_by_text("sam ·").count() == 0
    page.context.close()


def test_a_known_streamlit_session_id_without_the_cookie_gets_the_sign_in_page(server, browser):
    """Attacker's browser reconnects to the victim's Streamlit session by its id (as the page does after a
    network drop), but has no session cookie: it gets the sign-in page, not the victim's chat."""
    record = """
      (() => { const Orig = window.WebSocket; window.__kbProtocols = []; window.__kbSockets = [];
        const stolen = window.__kbStolen || null;
        function Wrapped(url, protocols) {
          let p = protocols === undefined ? [] : (Array.isArray(protocols) ? protocols.slice() : [protocols]);
          window.__kbProtocols.push(p.slice());
          if (stolen) { while (p.length < 2) p.push(''); if (p.length > 2) p[2] = stolen; else p.push(stolen); }
          const ws = new Orig(url, p);
          window.__kbSockets.push(ws);
          return ws;
        }
        Wrapped.prototype = Orig.prototype;
        for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Wrapped[k] = Orig[k];
        window.WebSocket = Wrapped; })();
    """
    victim = new_page(browser, init_script=record)
    url = server["url"]
    sign_in(victim, url, "tess", STAFF["tess"])
    victim.get_by_role("heading", name="Ask the documents").wait_for()
    # a dropped connection makes the page reconnect, sending its session id: that is what an attacker needs
    victim.evaluate("window.__kbSockets[window.__kbSockets.length - 1].close()")
    try:
        victim.wait_for_function("window.__kbProtocols.some(p => p.length > 2 && p[2])", timeout=60_000)
    except Exception:
        raise AssertionError(f"no reconnect with a session id: {victim.evaluate('window.__kbProtocols')}") from None
    session_id = victim.evaluate("window.__kbProtocols.filter(p => p.length > 2 && p[2]).pop()[2]")
    assert re.fullmatch(r"[0-9a-f-]{36}", session_id), session_id
    victim.get_by_text("tess ·").wait_for()
    wait_idle(victim)

    attacker = new_page(browser, init_script=f"window.__kbStolen = {session_id!r};" + record)
    attacker.goto(url)
    attacker.get_by_role("button", name="Sign in").wait_for()
    # the notice shows the reconnect did reach the victim's session, which knew a signed-in user
    attacker.get_by_text("Your session ended").wait_for()
    assert attacker.get_by_text("tess ·").count() == 0
    assert attacker.get_by_role("heading", name="Ask the documents").count() == 0
    assert not [c for c in attacker.context.cookies() if c["name"] == COOKIE]
    shot(attacker, "session-id-takeover-sign-in")
    # the victim's own browser still holds a valid session (its cookie): a reload keeps it signed in
    victim.reload()
    victim.get_by_text("tess ·").wait_for()
    victim.context.close()
    attacker.context.close()


def test_a_chinese_browser_gets_the_chinese_interface_and_the_switch_is_remembered(server, browser):
    page = new_page(browser, locale="zh-CN")
    url = server["url"]
    page.goto(url)
    page.get_by_role("button", name="登录").wait_for()
    page.get_by_label("用户名", exact=True).wait_for()
    page.get_by_label("密码", exact=True).wait_for()
    shot(page, "zh-sign-in")
    sign_in(page, url, "admin", USERS["admin"], button="登录", user_label="用户名", password_label="密码")
    nav = page.get_by_test_id("stSidebarNav")
    for title in ("问答", "文档", "用户与权限", "我的账户"):
        nav.get_by_text(title, exact=True).wait_for()
    page.get_by_role("button", name="退出登录").wait_for()
    nav.get_by_text("问答", exact=True).click()
    page.get_by_role("heading", name="向文档提问").wait_for()
    shot(page, "zh-chat")
    # the sidebar switch changes the language at once, and is remembered for the user
    page.get_by_test_id("stSidebar").get_by_text("English", exact=True).click()
    page.get_by_role("heading", name="Ask the documents").wait_for()
    page.context.close()
    again = new_page(browser, locale="zh-CN")
    again.goto(url)
    again.get_by_role("button", name="登录").wait_for()  # signed out, the browser's language counts
    sign_in(again, url, "admin", USERS["admin"], button="登录", user_label="用户名", password_label="密码")
    again.get_by_test_id("stSidebarNav").get_by_text("Documents", exact=True).wait_for()  # the user's choice
    again.get_by_test_id("stSidebar").get_by_text("中文", exact=True).click()  # back, for the other tests
    again.get_by_test_id("stSidebarNav").get_by_text("文档", exact=True).wait_for()
    again.get_by_test_id("stSidebar").get_by_text("English", exact=True).click()
    again.get_by_test_id("stSidebarNav").get_by_text("Documents", exact=True).wait_for()
    again.context.close()


def test_a_too_long_question_gets_a_clear_message_and_keeps_its_text(server, browser):
    page = new_page(browser)
    sign_in(page, server["url"], "sam", STAFF["sam"])
    page.get_by_role("button", name="New conversation").click()
    wait_idle(page)
    long_question = "Please summarise the travel policy. " * 125  # 4,500 characters
    box = page.get_by_placeholder("Ask a question about your documents")
    box.fill(long_question)
    assert len(box.input_value()) == len(long_question)  # nothing cut off in the browser
    box.press("Enter")
    page.get_by_text(re.compile(r"Your question is 4,49\d characters long; the limit is 4,000")).wait_for()
    from playwright.sync_api import expect

    # the text area mounts right after the message: wait for its value rather than read it at once
    expect(page.get_by_label("Your question (not sent)")).to_have_value(
        re.compile(r"\s*" + re.escape(long_question.strip()) + r"\s*"), timeout=15_000)
    assert page.get_by_test_id("stChatMessage").count() == 0  # not sent, not silently dropped either
    shot(page, "question-too-long")
    page.context.close()


def test_own_password_change_and_the_first_admin_is_asked(server, browser):
    url = server["url"]
    admin = new_page(browser)
    sign_in(admin, url, "admin", USERS["admin"])
    admin.get_by_role("heading", name="My account").wait_for()  # the first admin lands here
    admin.get_by_text("Choose your own password now").first.wait_for()
    shot(admin, "first-admin-asked-to-change-password")
    admin.context.close()

    page, other = new_page(browser), new_page(browser)
    sign_in(page, url, "sam", STAFF["sam"])
    sign_in(other, url, "sam", STAFF["sam"])  # a second browser of the same user
    page.get_by_test_id("stSidebarNav").get_by_text("My account").click()
    page.get_by_role("heading", name="My account").wait_for()
    form = page.get_by_test_id("stForm")
    form.get_by_label("Current password", exact=True).fill("not-my-password")
    form.get_by_label("New password", exact=True).fill("Harbour-lantern-ninety-7")
    form.get_by_label("New password again", exact=True).fill("Harbour-lantern-ninety-7")
    form.get_by_role("button", name="Change password").click()
    page.get_by_text("The current password is wrong.").wait_for()
    form.get_by_label("Current password", exact=True).fill(STAFF["sam"])
    form.get_by_label("New password", exact=True).fill("Harbour-lantern-ninety-7")
    form.get_by_label("New password again", exact=True).fill("Harbour-lantern-ninety-7")
    form.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password was changed.").wait_for()
    shot(page, "own-password-changed")
    page.reload()
    page.get_by_text("sam ·").wait_for()  # this browser stays signed in
    other.reload()
    other.get_by_role("button", name="Sign in").wait_for()  # the other one is signed out
    other.get_by_label("User name", exact=True).fill("sam")
    other.get_by_label("Password", exact=True).fill(STAFF["sam"])
    other.get_by_role("button", name="Sign in").click()
    other.get_by_text("Wrong user name or password.").wait_for()  # the old password is gone
    STAFF["sam"] = "Harbour-lantern-ninety-7"
    sign_in(other, url, "sam", STAFF["sam"])
    page.context.close()
    other.context.close()


RENDER_BUDGET_S = 2.0  # the target, reported in docs/benchmarks.md from render-times.json
# A test checks behaviour, not speed on a shared machine: it fails only on a page that hangs or crawls.
RENDER_CEILING_S = 10.0
PAGES = {"chat": "Ask the documents", "documents": "Documents", "users": "Users & access",
         "retrieval-test": "Retrieval test", "dashboard": "Dashboard", "account": "My account"}


def test_signed_in_pages_render_and_their_times_are_recorded(server, browser):
    """From navigation to the page's heading, on a signed-in session (a reload: new Streamlit session, same
    cookie). One visit warms each page, the median of three more counts."""
    import json
    import statistics

    page = new_page(browser)
    url = server["url"]
    sign_in(page, url, "sam", STAFF["sam"])  # staff: chat and account
    admin = new_page(browser)
    sign_in(admin, url, "admin", USERS["admin"])
    times: dict[str, float] = {}
    for who, p, paths in ((page, "sam", ("chat", "account")), (admin, "admin", tuple(PAGES))):
        for path in paths:
            samples = []
            for i in range(4):
                start = time.perf_counter()
                who.goto(f"{url}/{path}")
                who.get_by_role("heading", name=PAGES[path], exact=True).wait_for(timeout=30_000)
                wait_idle(who)
                if i:
                    samples.append(time.perf_counter() - start)
            times[f"{p}:{path}"] = round(statistics.median(samples), 3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "render-times.json").write_text(json.dumps(times, indent=1))
    print("render times (s):", times)
    over = {k: v for k, v in times.items() if v >= RENDER_BUDGET_S}
    if over:
        print(f"over the {RENDER_BUDGET_S} s target on this machine now: {over}")
    crawling = {k: v for k, v in times.items() if v >= RENDER_CEILING_S}
    assert not crawling, f"pages slower than {RENDER_CEILING_S} s: {crawling}"
    page.context.close()
    admin.context.close()
