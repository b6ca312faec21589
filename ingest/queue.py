"""The job queue lives in the database, so any number of workers on any hosts can share it.

A job is claimed by a compare-and-set UPDATE that only succeeds while the job is queued or its
lease has expired; on PostgreSQL candidates are found with ``FOR UPDATE SKIP LOCKED`` so workers
do not queue behind each other. A worker renews its lease while it works; a worker that dies
(even by SIGKILL) stops renewing, and its job is claimed again once the lease runs out.
Completion is conditional on still holding the lease, so a job finishes exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, insert, or_, select, update
from sqlalchemy.orm import Session

from app.models import Job


class LeaseLost(Exception):
    """Another worker took this job over (our lease expired); our work must be rolled back."""


@dataclass(frozen=True)
class Claim:
    job_id: int
    document_id: int
    attempts: int
    owner: str


def now() -> datetime:
    return datetime.now(UTC)


def _claimable(t: datetime):
    return or_(Job.state == "queued", and_(Job.state == "running", Job.lease_expires_at < t))


def enqueue(session: Session, document_id: int, new: bool = False) -> None:
    """Queue (or queue again) the job of a document; ``new`` = the document was just created."""
    if new:
        session.execute(insert(Job).values(document_id=document_id, state="queued"))
        return
    job = session.scalar(select(Job).where(Job.document_id == document_id))
    if job is None:
        session.add(Job(document_id=document_id, state="queued"))
    else:
        job.state, job.attempts, job.lease_owner, job.lease_expires_at = "queued", 0, None, None


def claim(session: Session, owner: str, lease_seconds: int, limit: int = 1) -> list[Claim]:
    """Claim up to ``limit`` of the oldest available jobs in one statement, oldest first. Commits the claim."""
    t = now()
    candidates = select(Job.id).where(_claimable(t)).order_by(Job.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)  # other workers skip, never wait
    # Picked once (MATERIALIZED): a subquery in the WHERE could run again and lock more than `limit` rows.
    picked = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(select(picked.c.id)), _claimable(t))
        .values(state="running", lease_owner=owner, lease_expires_at=t + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1, updated_at=t)
        .returning(Job.id, Job.document_id, Job.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return [Claim(r.id, r.document_id, r.attempts, owner) for r in sorted(rows)]


def claim_document(session: Session, document_id: int, owner: str, lease_seconds: int) -> Claim:
    """Take the job of one document now, in the caller's transaction, whatever state it was left in.

    For an admin's retry that runs in the admin's own process (a password that must not reach the
    queue); the caller checks first that no worker is processing the document."""
    t = now()
    job_id = session.scalar(select(Job.id).where(Job.document_id == document_id))
    if job_id is None:
        job_id = session.scalar(insert(Job).values(document_id=document_id, state="queued").returning(Job.id))
    session.execute(update(Job).where(Job.id == job_id)
                    .values(state="running", lease_owner=owner, lease_expires_at=t + timedelta(seconds=lease_seconds),
                            attempts=1, updated_at=t)
                    .execution_options(synchronize_session=False))
    return Claim(job_id, document_id, 1, owner)


def renew(session: Session, claims: list[Claim], lease_seconds: int) -> list[Claim]:
    """Extend the leases of ``claims`` in one statement; returns the ones another worker has taken over
    (a job we completed meanwhile is ours, not lost). Commits."""
    if not claims:
        return []
    owners = {c.owner for c in claims}
    if len(owners) != 1:
        raise ValueError("renew the claims of one worker at a time")
    kept = set(session.scalars(
        update(Job).where(Job.id.in_([c.job_id for c in claims]), Job.lease_owner == owners.pop(),
                          Job.state.in_(("running", "done")))
        .values(lease_expires_at=case((Job.state == "running", now() + timedelta(seconds=lease_seconds)),
                                      else_=Job.lease_expires_at))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ))
    session.commit()
    return [c for c in claims if c.job_id not in kept]


def complete(session: Session, claim: Claim) -> None:
    """Mark the job done in the caller's transaction; raises LeaseLost if we no longer hold it."""
    res = session.execute(
        update(Job).where(Job.id == claim.job_id, Job.lease_owner == claim.owner, Job.state == "running")
        .values(state="done", lease_expires_at=None, updated_at=now())
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        raise LeaseLost(f"job {claim.job_id} was taken over by another worker")


def pending_count(session: Session) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(Job).where(Job.state != "done")) or 0
