"""What a process reports about itself: readiness (/readyz) and the gauges /metrics exposes.

Reading gauges is an admin's view of the whole system (queue, documents, chunks, the last chain
check); on the server itself (loopback) the operator may read them without a key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, text

from app.models import Job
from app.services import auditing, documents
from app.services.caller import Principal

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def may_read_metrics(container, who: Principal | None, client_host: str | None) -> bool:
    """Admins anywhere; anyone on this machine when api.metrics_loopback is on."""
    if who is not None and who.role == "admin":
        return True
    return bool(container.settings.api.metrics_loopback and client_host in LOOPBACK)


@dataclass
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)  # part -> "ok" or what is wrong


def readiness(container) -> Readiness:
    """Database reachable and migrated, master key readable, model configured, index loaded."""
    from app import migrate

    checks: dict[str, str] = {}

    def check(name, fn) -> None:
        try:
            fn()
            checks[name] = "ok"
        except Exception as exc:  # each part says what is wrong; the rest is still checked
            checks[name] = str(exc) or type(exc).__name__

    def database() -> None:
        with container.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if migrate.current_revision(container.engine) != migrate.head_revision(container.engine):
            raise RuntimeError("the schema is not at the latest revision: run `kb migrate`")

    check("database", database)
    check("keys", lambda: container.vault)
    check("model", lambda: container.generator)
    if checks["database"] == "ok" and checks["keys"] == "ok":
        check("index", lambda: len(container.search_index))
    else:
        checks["index"] = "waiting for the database and keys"
    return Readiness(all(v == "ok" for v in checks.values()), checks)


@dataclass
class Gauges:
    jobs: dict[str, int]  # queued | running -> count
    oldest_queued_s: float  # age of the oldest queued job, 0 when none
    documents: dict[str, int]  # status -> count (newest versions)
    chunks: int
    audit_ok: bool | None  # last chain verification of this process; None: not run yet
    audit_checked_at: float | None
    taken_s: float


def gauges(container) -> Gauges:
    """The system gauges; a caller shows them only to whom ``may_read_metrics`` allows."""
    t0 = time.perf_counter()
    with container.sessions() as s:
        jobs = {str(k): int(v) for k, v in
                s.execute(select(Job.state, func.count()).where(Job.state != "done").group_by(Job.state)).all()}
        oldest = s.scalar(select(func.min(Job.created_at)).where(Job.state == "queued"))
        docs = documents.status_counts(s)
        chunks = documents.chunk_count(s)
    age = 0.0
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    last = auditing.last_check(container)
    return Gauges(jobs, age, docs, chunks, None if last is None else last.ok, None if last is None else last.at,
                  time.perf_counter() - t0)
