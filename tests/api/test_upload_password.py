"""A password given at upload (API and service): the protected files index in the uploader's process,
before the reply, and the password is found nowhere afterwards (data dir, database, audit log, logs)."""

from __future__ import annotations

import io
import logging

import pytest

from app.api.app import create_app
from app.services import documents
from app.services.caller import operator
from app.services.documents import Upload
from ingest.types import DocStatus
from ingest.worker import Worker
from tests.api.conftest import auth, new_key, serve
from tests.ingest.test_password import OFFICE_PASSWORD, PDF, PDF_PASSWORD, encrypted_docx

pytestmark = pytest.mark.slow


def assert_nowhere(secret: str, container, logs: str) -> None:
    assert secret not in logs
    for path in container.settings.data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            for form in (secret.encode(), secret.encode("utf-16-le")):
                assert form not in raw, f"{secret!r} found in {path}"


def test_upload_with_password_indexes_now_and_keeps_nothing(container, client, caplog):
    caplog.set_level(logging.DEBUG)
    container.settings.pii.enabled = False  # not what this test is about
    with serve(create_app(container)) as url:
        admin = new_key(container, "admin")
        files = [("files", ("minutes.pdf", PDF.read_bytes(), "application/pdf")),
                 ("files", ("note.txt", b"The archive room is on the third floor.", "text/plain"))]
        r = client.post(f"{url}/api/v1/documents", headers=auth(admin),
                        data={"collection": "vault", "password": PDF_PASSWORD}, files=files)
        assert r.status_code == 202, r.text
        outcomes = {x["source"]: x for x in r.json()["results"]}
        assert outcomes["minutes.pdf"]["outcome"] == "indexed", outcomes  # before the reply, not queued
        assert outcomes["note.txt"]["outcome"] == "indexed"  # an unprotected file indexes the same way

        wrong = client.post(f"{url}/api/v1/documents", headers=auth(admin),
                            data={"collection": "other", "password": "not-the-password"},
                            files=[("files", ("minutes.pdf", PDF.read_bytes(), "application/pdf"))])
        (result,) = wrong.json()["results"]
        assert result["outcome"] == "needs_password" and "does not open it" in result["reason"]

        empty = client.post(f"{url}/api/v1/documents", headers=auth(admin), data={"collection": "x", "password": ""},
                            files=[("files", ("a.txt", b"text", "text/plain"))])
        assert empty.status_code == 202 and empty.json()["results"][0]["outcome"] == "queued"  # empty = none given

    (docx_result,) = documents.save_uploads(container, operator(), [Upload("safe.docx", io.BytesIO(encrypted_docx()))],
                                            "vault", password=OFFICE_PASSWORD)
    assert docx_result.outcome == DocStatus.indexed, docx_result
    assert Worker(container).run_once() == 1  # only the upload without a password was left to a worker
    hits = container.search_index.search("who keeps the safe combination", 3, None)
    assert hits
    for secret in (PDF_PASSWORD, OFFICE_PASSWORD, "not-the-password"):
        assert_nowhere(secret, container, caplog.text)

