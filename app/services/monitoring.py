"""What a process reports about itself: readiness (/readyz) and the gauges /metrics exposes.

Reading gauges is an admin's view of the whole system (queue, documents, chunks, the last chain
check); on the server itself (loopback) the operator may read them without a key.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, text

from app import audit
from app.errors import KbError
from app.models import AuditRecord, Job
from app.services import auditing, documents, feedback
from app.services.caller import Principal, require_role

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


# --- the admin dashboard -------------------------------------------------------------------------
@dataclass
class Series:
    """One chart: a value per time bucket (None where there was nothing to measure)."""

    label: str
    values: list[float | None]


@dataclass
class Dashboard:
    gauges: Gauges  # now: what /metrics reports (documents by status, queue, chunks, chain check)
    since: datetime
    bucket: str  # hour | day
    starts: list[datetime]  # the start of each bucket (UTC)
    queue: dict[str, Series]  # depth (at each bucket's end), uploaded, processed
    answers: dict[str, Series]  # answered, refused, errors, latency p50/p95, first token p50/p95 (ms)
    feedback: dict[str, Series]  # helpful, not_helpful
    totals: dict[str, float | int | None]  # the whole period: answered, refused, errors, p50_ms, p95_ms, ...
    taken_s: float


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


MAX_DASHBOARD_DAYS = 90
MAX_ANSWER_ROWS = 100_000  # newest answers read for the latency charts; older ones in a long period are left out


def dashboard(container, who: Principal, days: int = 7, now: datetime | None = None) -> Dashboard:
    """Time series for the admin dashboard over the last ``days`` days: hourly buckets up to two days,
    daily beyond. Queue figures come from the jobs table, answer figures from the timings each answer's
    audit record holds (the AskResult.timings /metrics observes), feedback from its audit records; no
    sealed field is opened."""
    require_role(who, "admin")
    if not 1 <= days <= MAX_DASHBOARD_DAYS:
        raise KbError(f"The period must be 1 to {MAX_DASHBOARD_DAYS} days, not {days}.")
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    step = timedelta(hours=1) if days <= 2 else timedelta(days=1)
    first = now.replace(minute=0, second=0, microsecond=0) if days <= 2 else now.replace(
        hour=0, minute=0, second=0, microsecond=0)
    n = int(timedelta(days=days) // step)
    starts = [first - step * (n - 1 - i) for i in range(n)]
    since = starts[0]

    def slot(ts: datetime) -> int | None:
        i = int((audit.utc(ts) - since) // step)
        return i if 0 <= i < n else None

    g = gauges(container)
    with container.sessions() as s:
        jobs = s.execute(select(Job.created_at, Job.updated_at, Job.state)
                         .where(or_(Job.state != "done", Job.updated_at >= since))).all()
        asks = s.execute(select(AuditRecord.created_at, AuditRecord.outcome, AuditRecord.details)
                         .where(AuditRecord.kind == "query", AuditRecord.action == "ask",
                                AuditRecord.created_at >= since)
                         .order_by(AuditRecord.seq.desc()).limit(MAX_ANSWER_ROWS)).all()

    uploaded, processed, depth = [0] * n, [0] * n, [0] * n
    for created, updated, state in jobs:
        created, updated = audit.utc(created), audit.utc(updated)
        if (i := slot(created)) is not None:
            uploaded[i] += 1
        done_at = updated if state == "done" else None
        if done_at is not None and (i := slot(done_at)) is not None:
            processed[i] += 1
        for i, start in enumerate(starts):  # waiting at the end of bucket i
            end = start + step
            if created < end and (done_at is None or done_at >= end):
                depth[i] += 1

    answered, refused, errors = [0] * n, [0] * n, [0] * n
    total_ms: list[list[float]] = [[] for _ in range(n)]
    first_ms: list[list[float]] = [[] for _ in range(n)]
    for created, outcome, details in asks:
        if (i := slot(created)) is None:
            continue
        d = details or {}
        if outcome == "error":
            errors[i] += 1
            continue
        if outcome == "refused" or d.get("refused"):
            refused[i] += 1
            continue
        if outcome != "ok":  # cancelled: the answer was not delivered
            continue
        answered[i] += 1
        t = d.get("timings") or {}
        if isinstance(t.get("total_ms"), int | float):
            total_ms[i].append(float(t["total_ms"]))
        if isinstance(t.get("first_token_ms"), int | float):
            first_ms[i].append(float(t["first_token_ms"]))

    helpful, not_helpful = _feedback_per_bucket(container, since, slot, n)

    all_total = [x for b in total_ms for x in b]
    all_first = [x for b in first_ms for x in b]
    totals: dict[str, float | int | None] = {
        "answered": sum(answered), "refused": sum(refused), "errors": sum(errors),
        "p50_ms": percentile(all_total, 50), "p95_ms": percentile(all_total, 95),
        "first_token_p50_ms": percentile(all_first, 50), "first_token_p95_ms": percentile(all_first, 95),
        "uploaded": sum(uploaded), "processed": sum(processed),
        "helpful": sum(helpful), "not_helpful": sum(not_helpful),
    }
    return Dashboard(
        g, since, "hour" if days <= 2 else "day", starts,
        {"depth": Series("waiting", depth), "uploaded": Series("uploaded", uploaded),
         "processed": Series("processed", processed)},
        {"answered": Series("answered", answered), "refused": Series("refused", refused),
         "errors": Series("errors", errors),
         "p50_ms": Series("p50", [percentile(b, 50) for b in total_ms]),
         "p95_ms": Series("p95", [percentile(b, 95) for b in total_ms]),
         "first_token_p50_ms": Series("first token p50", [percentile(b, 50) for b in first_ms]),
         "first_token_p95_ms": Series("first token p95", [percentile(b, 95) for b in first_ms])},
        {"helpful": Series("helpful", helpful), "not_helpful": Series("not helpful", not_helpful)},
        totals, time.perf_counter() - t0)


def _feedback_per_bucket(container, since: datetime, slot, n: int) -> tuple[list[int], list[int]]:
    """Ratings per bucket, the latest rating of each answer counted once (as feedback.summary does)."""
    with container.sessions() as s:
        rows = s.execute(select(AuditRecord.created_at, AuditRecord.target, AuditRecord.details)
                         .where(feedback.is_feedback(), AuditRecord.created_at >= since)
                         .order_by(AuditRecord.seq)).all()
    latest = {target: (audit.utc(created), (details or {}).get("rating")) for created, target, details in rows}
    up, down = [0] * n, [0] * n
    for created, rating in latest.values():
        if (i := slot(created)) is not None:
            if rating == "up":
                up[i] += 1
            elif rating == "down":
                down[i] += 1
    return up, down
