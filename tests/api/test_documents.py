"""Documents over HTTP: multipart upload under the UI's caps, list with status and reason, retry, delete."""

from __future__ import annotations

import io
import zipfile

import pytest

from app.api.app import create_app
from ingest.worker import Worker
from tests.api.conftest import auth, new_key, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def served(container):
    container.settings.pii.enabled = False  # not what these tests are about
    container.settings.ui.max_upload_mb = 0.05  # 50 KB per file, as the web UI would cap it
    with serve(create_app(container)) as url:
        yield container, url, new_key(container, "admin")


def test_upload_list_retry_delete(served, client):
    c, url, admin = served
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("policies/travel.txt", "Hotel costs are reimbursed up to 600 yuan per night.")
    files = [("files", ("leave.txt", b"Employees receive 25 days of paid annual leave.", "text/plain")),
             ("files", ("../../etc/passwd", b"root:x:0:0", "text/plain")),
             ("files", ("big.txt", b"x" * 80_000, "text/plain")),
             ("files", ("policies.zip", archive.getvalue(), "application/zip"))]
    r = client.post(f"{url}/api/v1/documents", headers=auth(admin), data={"collection": "hr"}, files=files)
    assert r.status_code == 202, r.text
    outcomes = {x["source"]: x["outcome"] for x in r.json()["results"]}
    assert outcomes["leave.txt"] == "queued" and outcomes["big.txt"] == "too_large"
    assert "etc/passwd" in outcomes and not any(s.startswith("/") or ".." in s for s in outcomes)  # made safe
    assert any("travel.txt" in s and o == "queued" for s, o in outcomes.items())

    docs = client.get(f"{url}/api/v1/documents", headers=auth(admin)).json()["documents"]
    by_source = {d["source"]: d for d in docs}
    assert by_source["leave.txt"]["status"] == "queued" and by_source["leave.txt"]["collection"] == "hr"
    assert "big.txt" not in by_source  # refused before it was stored, with the reason in the results
    assert any("upload limit" in (x["reason"] or "") for x in r.json()["results"] if x["source"] == "big.txt")
    leave = by_source["leave.txt"]["id"]
    r = client.post(f"{url}/api/v1/documents/{leave}/retry", headers=auth(admin))
    assert r.status_code == 422 and "already queued" in r.json()["error"]["message"]

    Worker(c).run_once()
    got = client.get(f"{url}/api/v1/documents/{leave}", headers=auth(admin)).json()
    assert got["status"] == "indexed" and got["n_chunks"] >= 1
    assert client.get(f"{url}/api/v1/documents", params={"status": "indexed"},
                      headers=auth(admin)).json()["documents"]
    r = client.post(f"{url}/api/v1/documents/{leave}/retry", headers=auth(admin))
    assert r.status_code == 200 and r.json() == {"queued": [leave]}
    r = client.delete(f"{url}/api/v1/documents/{leave}", headers=auth(admin))
    assert r.status_code == 200 and r.json()["deleted"]["source"] == "leave.txt"
    assert client.get(f"{url}/api/v1/documents/{leave}", headers=auth(admin)).status_code == 404

    actions = [x["action"] for x in client.get(f"{url}/api/v1/audit/records", params={"kind": "admin"},
                                               headers=auth(admin)).json()["records"]]
    assert {"docs.upload", "docs.retry", "docs.delete"} <= set(actions)


def test_only_files_over_the_cap_is_413_and_staff_cannot_upload(served, client):
    c, url, admin = served
    r = client.post(f"{url}/api/v1/documents", headers=auth(admin), data={"collection": "hr"},
                    files={"files": ("big.txt", b"x" * 80_000, "text/plain")})
    assert r.status_code == 413 and "ui.max_upload_mb" in r.json()["error"]["message"]
    from app.services import users
    from tests.api.conftest import ADMIN

    users.create_user(c, ADMIN, "sam", "staff", "sam-password-1")
    r = client.post(f"{url}/api/v1/documents", headers=auth(new_key(c, "sam")), data={"collection": "hr"},
                    files={"files": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 403
    r = client.post(f"{url}/api/v1/documents", headers=auth(admin), data={"collection": "hr"})
    assert r.status_code == 422
