"""Feedback on an answer: the asker rates it (helpful or not, with an optional comment).

Feedback is one more record on the audit chain (kind ``feedback``, action ``feedback``, target the
answer's seq, ``details.answer_seq`` the same): tamper-evident like the answer itself, the comment
sealed like questions are. Only the user who asked may rate an answer (again to change their mind: the
latest counts); auditors read it in the query log, admins see counts in :func:`summary`.
Records written before kind ``feedback`` existed (kind query, action feedback) are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select

from app import audit
from app.errors import KbError, NotFound, PermissionDenied
from app.models import AuditRecord
from app.services.caller import Principal, actor, require_role

RATINGS = ("up", "down")
MAX_COMMENT = 2000
KIND = "feedback"


@dataclass(frozen=True)
class FeedbackReceipt:
    seq: int  # the feedback record
    answer_seq: int
    rating: str


def is_feedback():
    """Feedback records, current (kind feedback) and older ones (kind query, action feedback)."""
    return or_(AuditRecord.kind == KIND, and_(AuditRecord.kind == "query", AuditRecord.action == "feedback"))


def give(container, who: Principal, answer_seq: int, rating: str, comment: str | None = None) -> FeedbackReceipt:
    require_role(who, "staff", "admin", "auditor")
    if rating not in RATINGS:
        raise KbError(f"Rating must be one of {', '.join(RATINGS)}, not {rating!r}.")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise KbError(f"The comment is too long ({len(comment)} characters; at most {MAX_COMMENT}).")
    with container.sessions.begin() as s:
        rec = s.scalar(select(AuditRecord).where(AuditRecord.seq == answer_seq))
        if rec is None or rec.kind != "query" or rec.action != "ask":
            raise NotFound(f"No answer with audit record {answer_seq}.")
        if rec.actor != who.name:
            raise PermissionDenied(f"Answer {answer_seq} was given to another user; only the asker may rate it.")
        out = audit.append(s, container.vault, kind=KIND, action="feedback", target=str(answer_seq),
                           actor=actor(who), details={"answer_seq": answer_seq, "rating": rating,
                                                      "commented": bool(comment)},
                           sealed={"comment": comment} if comment else None)
        return FeedbackReceipt(out.seq, answer_seq, rating)


def given(container, who: Principal, answer_seqs: list[int]) -> dict[int, str]:
    """The caller's latest rating of each of these answers (answers not rated are left out)."""
    seqs = [str(int(x)) for x in answer_seqs if x is not None]
    if not seqs:
        return {}
    with container.sessions() as s:
        rows = s.execute(select(AuditRecord.target, AuditRecord.details).where(
            is_feedback(), AuditRecord.actor == who.name, AuditRecord.target.in_(seqs))
            .order_by(AuditRecord.seq)).all()
    return {int(target): (details or {}).get("rating") for target, details in rows}  # later rows win


@dataclass
class FeedbackSummary:
    since: datetime
    helpful: int = 0  # latest rating per answer
    not_helpful: int = 0
    with_comment: int = 0
    by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # YYYY-MM-DD -> {"up": n, "down": n}
    worst: list[int] = field(default_factory=list)  # answer seqs rated not helpful, newest first (at most 20)

    @property
    def rated(self) -> int:
        return self.helpful + self.not_helpful


def summary(container, who: Principal, days: int = 30, now: datetime | None = None) -> FeedbackSummary:
    """Counts of ratings over the last ``days`` days (admins and auditors). An answer rated twice counts
    once, with its latest rating, on the day of that rating. Reads no sealed field."""
    require_role(who, "admin", "auditor")
    if days < 1:
        raise KbError("The period must be at least one day.")
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    with container.sessions() as s:
        rows = s.execute(select(AuditRecord.seq, AuditRecord.created_at, AuditRecord.target, AuditRecord.details)
                         .where(is_feedback(), AuditRecord.created_at >= since).order_by(AuditRecord.seq)).all()
    latest: dict[str, tuple[int, datetime, dict]] = {}
    for seq, created, target, details in rows:
        latest[target] = (seq, audit.utc(created), details or {})
    out = FeedbackSummary(since)
    for target, (_seq, created, details) in sorted(latest.items(), key=lambda kv: -kv[1][0]):
        rating = details.get("rating")
        day = created.date().isoformat()
        bucket = out.by_day.setdefault(day, {"up": 0, "down": 0})
        if rating in bucket:
            bucket[rating] += 1
        if rating == "up":
            out.helpful += 1
        elif rating == "down":
            out.not_helpful += 1
            if len(out.worst) < 20 and str(target).isdigit():
                out.worst.append(int(target))
        out.with_comment += bool(details.get("commented"))
    return out
