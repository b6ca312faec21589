"""The API through real HTTP: uvicorn serving create_app(container) on a free loopback port."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.api.app import create_app
from app.services import api_keys, users
from app.services.caller import operator
from app.services.container import Container
from app.services.setup import init
from tests.conftest import make_settings

ADMIN = operator("cli")

LEAVE = """# Annual leave policy

Employees receive 25 days of paid annual leave per calendar year. Up to five unused days may be carried
over and must be taken by 31 March of the following year. Leave requests are approved by the line manager.
"""
SALARY = """# Salary bands

The secret salary band for senior engineers is 91,000 to 118,000 per year. Bonuses are paid in March
and depend on the company result. This document belongs to the finance collection only.
"""


@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def new_key(c, user: str, **kw) -> str:
    return api_keys.create(c, ADMIN, user, **kw).secret


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(container) -> Iterator[tuple[Container, str]]:
    """A kb with users (admin, staff 'sam', auditor 'audrey') served over HTTP; no documents, no model."""
    users.create_user(container, ADMIN, "sam", "staff", "sam-password-1")
    users.create_user(container, ADMIN, "audrey", "auditor", "audrey-password-1")
    with serve(create_app(container)) as url:
        yield container, url


@pytest.fixture(scope="module")
def kb_docs(tmp_path_factory, smollm2) -> Iterator[Container]:
    """A kb (SQLite) with two collections ingested (hr: leave, finance: salary) and the small model;
    staff 'sam' may read hr only. Shared by a module's tests: they must not change its documents."""
    tmp = tmp_path_factory.mktemp("kb")
    c = Container(make_settings(tmp / "data", f"sqlite:///{tmp / 'kb.sqlite3'}", pii={"enabled": False}))
    init(c, "admin", "admin-password-1")
    models = c.settings.models_dir
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(smollm2.path, models / smollm2.path.name)
    shutil.copy(Path(smollm2.path).parent / "manifest.json", models / "manifest.json")
    from ingest.submit import submit_paths
    from ingest.worker import Worker

    for name, text in (("hr", LEAVE), ("finance", SALARY)):
        folder = tmp / name
        folder.mkdir()
        (folder / f"{name}.md").write_text(text)
        list(submit_paths(c, [folder], name))
    Worker(c).run_once()
    users.create_user(c, ADMIN, "sam", "staff", "sam-password-1")
    users.grant(c, ADMIN, "hr", user="sam")
    yield c
    c.engine.dispose()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as cl:
        yield cl
