"""Engine and session factory; turns connection failures into messages that say what to do."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import ConfigError

log = logging.getLogger(__name__)


def make_engine(url: str, echo: bool = False, pool_size: int = 5) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"KB_DATABASE__URL is not a database URL: {url!r}. Examples: sqlite:///data/kb.sqlite3, "
            "postgresql+psycopg://kb@127.0.0.1:5432/kb"
        ) from None
    if parsed.drivername == "postgresql" or parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_size=pool_size, pool_pre_ping=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise ConfigError(f"Unsupported database URL {parsed.render_as_string(hide_password=True)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (UI) do not block the worker
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def check_connection(engine: Engine) -> None:
    """Fail early with a useful message when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        log.debug("database connection failed", exc_info=True)
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"Cannot reach the database at {where}: {first}. Check that the server is running and "
            "KB_DATABASE__URL is right (or unset it to use the embedded SQLite file)."
        ) from None


def lock_until_commit(session: Session, *key: int) -> None:
    """An exclusive lock, held until the session's transaction ends.

    PostgreSQL: an advisory lock on ``key`` (one bigint, or two ints), so only transactions with the
    same key wait for each other. SQLite has one lock for writers: take it now rather than at the first
    write, so what the transaction reads next is the latest commit and no other writer can change it."""
    if session.get_bind().dialect.name == "postgresql":
        names = [f"k{i}" for i in range(len(key))]
        session.execute(text(f"SELECT pg_advisory_xact_lock({', '.join(':' + n for n in names)})"),
                        dict(zip(names, key, strict=True)))
    else:  # a write that matches no row still takes the write lock
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0"))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
