"""`kb api` as real processes: the CLI entry point, and two replicas on one PostgreSQL serving a document
that another process ingested, without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.services import api_keys
from app.services.container import Container
from app.services.setup import init
from tests.api.conftest import ADMIN, auth
from tests.conftest import make_settings
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow


def _env(data: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_") or k == "KB_RETRIEVAL__EMBED_CACHE_DIR"}
    env.update({"KB_DATA_DIR": str(data), "KB_DATABASE__URL": db_url, "KB_PII__ENABLED": "false",
                "PYTHONUNBUFFERED": "1"})
    return env


def _start_api(data: Path, db_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app", "api", "--port", str(port)], env=_env(data, db_url),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kb api exited early: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("kb api did not come up")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def _kb(data: Path, db_url: str):
    c = Container(make_settings(data, db_url, pii={"enabled": False}))
    init(c, "admin", "admin-password-1")
    return c


def _search(url: str, key: str, query: str) -> list[dict]:
    r = httpx.post(f"{url}/api/v1/search", headers=auth(key), json={"query": query, "k": 5}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_kb_api_serves_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "data"
    db_url = f"sqlite:///{tmp_path / 'kb.sqlite3'}"
    c = _kb(data, db_url)
    key = api_keys.create(c, ADMIN, "admin").secret
    c.engine.dispose()
    proc, url = _start_api(data, db_url)
    try:
        assert httpx.get(f"{url}/api/v1/me", headers=auth(key)).json()["user"] == "admin"
        assert httpx.get(f"{url}/api/v1/me").status_code == 401
    finally:
        out = _stop(proc)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: a normal death by SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
    assert key not in out  # a key is never logged


def test_two_replicas_on_one_postgres_serve_a_document_ingested_elsewhere(pg_database, tmp_path):
    data = tmp_path / "data"  # one data dir: the replicas share the master key file (a KMS mount in production)
    c = _kb(data, pg_database)
    key = api_keys.create(c, ADMIN, "admin").secret
    first_doc = tmp_path / "first"
    first_doc.mkdir()
    (first_doc / "leave.txt").write_text("Employees receive 25 days of paid annual leave per calendar year.")
    env = _env(data, pg_database)
    subprocess.run([sys.executable, "-m", "app", "ingest", str(first_doc), "-c", "hr", "--wait"], env=env,
                   check=True, capture_output=True, timeout=600)
    replicas = [_start_api(data, pg_database) for _ in range(2)]
    try:
        for _, url in replicas:
            assert _search(url, key, "paid annual leave")[0]["source"].endswith("leave.txt")
        second = tmp_path / "second"
        second.mkdir()
        (second / "travel.txt").write_text("Hotel costs are reimbursed up to 600 yuan per night in big cities.")
        subprocess.run([sys.executable, "-m", "app", "ingest", str(second), "-c", "hr", "--wait"], env=env,
                       check=True, capture_output=True, timeout=600)  # another process, while they run
        for _, url in replicas:
            hits = _search(url, key, "hotel costs reimbursed per night")
            assert hits and hits[0]["source"].endswith("travel.txt"), hits
    finally:
        for proc, _ in replicas:
            _stop(proc)
        c.engine.dispose()
