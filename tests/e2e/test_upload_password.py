"""The uploader's password field in a real browser: a password-protected PDF uploaded with its password
is indexed before the reply, and the password is nowhere in the data dir or the server's log."""

from __future__ import annotations

import time

from tests.e2e.test_browser import sign_in, wait_app_idle
from tests.ingest.test_password import PDF, PDF_PASSWORD


def upload(page, path, password: str = "") -> None:
    page.locator(".kbup input[type=file][data-kind=files]").set_input_files([str(path)])
    page.get_by_text(path.name).first.wait_for()
    if password:
        page.get_by_test_id("kbUploadPassword").fill(password)
    page.get_by_role("button", name="Upload and index").click()


def test_protected_pdf_uploads_with_its_password(kb_server, browser_page, tmp_path):
    page, url = browser_page, kb_server["url"]
    sign_in(page, url, "admin", "documents")
    page.get_by_role("heading", name="Documents", exact=True).wait_for()
    # A plain file first, left to the worker: it builds the embedding model into the data dir, which the
    # UI process then loads instead of building it again (this server does not share the tests' cache).
    plain = tmp_path / "opening-hours.txt"
    plain.write_text("The archive opens at nine on weekdays.")
    upload(page, plain)
    indexed = page.get_by_test_id("stMetric").filter(has_text="Indexed").get_by_test_id("stMetricValue")
    deadline = time.monotonic() + 400
    while indexed.inner_text().strip() != "1":
        assert time.monotonic() < deadline, "the plain file was not indexed"
        page.wait_for_timeout(2000)

    locked = tmp_path / "board-minutes.pdf"
    locked.write_bytes(PDF.read_bytes())
    upload(page, locked, PDF_PASSWORD)
    row = page.get_by_test_id("kbUploadList").get_by_role("listitem").filter(has_text=locked.name)
    row.get_by_text("indexed", exact=True).wait_for(timeout=300_000)  # indexed before the reply
    assert page.get_by_test_id("kbUploadPassword").input_value() == ""  # forgotten once used
    wait_app_idle(page)
    for path in [kb_server["log"], *kb_server["data"].rglob("*")]:
        if path.is_file():
            raw = path.read_bytes()
            assert PDF_PASSWORD.encode() not in raw and PDF_PASSWORD.encode("utf-16-le") not in raw, path
