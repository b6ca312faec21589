"""Feedback on an answer: the asker rates it (up or down, with an optional comment).

Feedback is one more record on the audit chain (kind query, action ``feedback``, target the answer's
seq): tamper-evident like the answer itself, the comment sealed like questions are. Only the user
who asked may rate an answer (again to change their mind: the latest counts); auditors read it in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app import audit
from app.errors import KbError, NotFound, PermissionDenied
from app.models import AuditRecord
from app.services.caller import Principal, actor, require_role

RATINGS = ("up", "down")
MAX_COMMENT = 2000


@dataclass(frozen=True)
class FeedbackReceipt:
    seq: int  # the feedback record
    answer_seq: int
    rating: str


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
        out = audit.append(s, container.vault, kind="query", action="feedback", target=str(answer_seq),
                           actor=actor(who), details={"answer_seq": answer_seq, "rating": rating},
                           sealed={"comment": comment} if comment else None)
        return FeedbackReceipt(out.seq, answer_seq, rating)
