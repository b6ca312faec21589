"""A populated kb (real documents through the real worker) and a second, empty database to restore into."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.services.caller import operator
from app.services.container import Container
from tests.conftest import PG_URL, _admin_url, make_settings

DOCS = {
    "firewall": "Firewall rules must be reviewed by the security officer every month. Changes need two approvals.",
    "revenue": "Quarterly revenue grew because of strong subscription sales in Asia, led by the Osaka office.",
    "leave": "Employees accrue twenty-five days of paid leave per year; unused days expire at the end of March.",
}
MARKER = "Osaka office"  # plaintext that must never appear in a backup


def settings_for(data_dir: Path, db_url: str, **overrides):
    # PII scrubbing is not what these tests are about: off, to spare the shared CPUs the spaCy load
    return make_settings(data_dir, db_url, pii={"enabled": False}, **overrides)


def populate(container: Container, tmp_path: Path) -> None:
    from app.services import documents, users
    from app.services.search import search
    from ingest.worker import Worker

    src = tmp_path / "src"
    src.mkdir()
    for name, body in DOCS.items():
        (src / f"{name}.txt").write_text(body)
    list(documents.ingest_paths(container, operator(), [src], "policies"))
    Worker(container).run_once()
    users.create_user(container, operator(), "alice", "staff", "alice-password-1")
    search(container, operator(), "who reviews firewall rules", k=2)


@pytest.fixture
def populated(tmp_path, db_url) -> Iterator[Container]:
    from app.services.setup import init

    c = Container(settings_for(tmp_path / "data", db_url))
    init(c, "admin", "admin-password-1")
    populate(c, tmp_path)
    yield c
    c.engine.dispose()


@pytest.fixture
def empty_db_url(tmp_path, db_url) -> Iterator[str]:
    """Another empty database of the same kind as db_url."""
    if db_url.startswith("sqlite"):
        (tmp_path / "other").mkdir()
        yield f"sqlite:///{tmp_path / 'other' / 'kb.sqlite3'}"
        return
    assert PG_URL
    base, admin = _admin_url()
    name = f"kbt_{uuid.uuid4().hex[:12]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()
