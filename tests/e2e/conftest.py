"""A real `kb serve` on a free port with a temp data dir, and a headless Debian chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
USERS = {"admin": "admin-password-1", "sam": "staff-password-1", "audrey": "audit-password-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kb serve exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310 (local)
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"kb serve did not answer on {url} within {timeout} s")


@pytest.fixture(scope="module")
def kb_server(tmp_path_factory, smollm2) -> Iterator[dict]:
    """kb initialised (admin, auditor 'audrey', collection 'handbook' readable by staff), then `kb serve`."""
    from app import accounts
    from app.services.container import Container
    from app.services.setup import init

    root = tmp_path_factory.mktemp("kb-e2e")
    data = root / "data"
    settings = make_settings(data, f"sqlite:///{data / 'kb.sqlite3'}")
    c = Container(settings)
    init(c, "admin", USERS["admin"])
    with c.sessions.begin() as s:
        accounts.add_user(s, "audrey", "auditor", USERS["audrey"])
        accounts.add_collection(s, "handbook", "Policies and handbooks")
        accounts.grant(s, "handbook", role="staff")
    c.engine.dispose()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    # the compiled embedder shared by the whole suite (tests/conftest.py): without it the server's worker
    # quantizes the model again in this temp data dir, minutes on a loaded machine before the first document
    if os.environ.get("KB_RETRIEVAL__EMBED_CACHE_DIR"):
        env["KB_RETRIEVAL__EMBED_CACHE_DIR"] = os.environ["KB_RETRIEVAL__EMBED_CACHE_DIR"]
    env.update({"KB_DATA_DIR": str(data), "KB_LLM__MODEL_PATH": str(smollm2.path),
                "KB_LLM__MODEL_SHA256": smollm2.sha256 or "", "KB_INGEST__POLL_SECONDS": "0.5",
                "KB_LLM__MAX_TOKENS": "160", "KB_API__PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=root)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc)
            yield {"url": url, "proc": proc, "log": log_path, "data": data}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "serve.log").write_bytes(log_path.read_bytes())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, keep a screenshot of what the browser showed."""
    outcome = yield
    report = outcome.get_result()
    page = item.funcargs.get("browser_page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and page is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"), full_page=True)
        except Exception as exc:  # the browser may be gone
            report.sections.append(("screenshot", f"no failure screenshot: {exc}"))


def browser_unavailable(reason: str) -> None:
    """Skip the browser tests on a developer machine; fail them under CI (the `CI` variable is set), so a
    CI run can never pass green with the end-to-end tests skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    """One chromium page with a fresh profile; dialogs (alert) are recorded, never accepted silently."""
    if not CHROMIUM.exists():
        browser_unavailable(f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium; "
                            ".ci/run does it)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_unavailable(f"playwright is not importable: {exc}")

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        try:
            ctx = pw.chromium.launch_persistent_context(
                str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000})
        except PlaywrightError as exc:
            browser_unavailable(f"playwright could not launch {CHROMIUM}: {(str(exc).splitlines() or [repr(exc)])[0]}")
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(30_000)
        page.dialogs = []  # type: ignore[attr-defined]

        def on_dialog(d):
            page.dialogs.append(d.message)  # type: ignore[attr-defined]
            d.dismiss()

        page.on("dialog", on_dialog)
        try:
            yield page
        finally:
            ctx.close()
