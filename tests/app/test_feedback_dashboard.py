"""Feedback lands on the audit chain as kind feedback, linked to the answer; the admin dashboard's series are
computed from the jobs table and the answers' audit records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app import accounts, audit
from app.errors import KbError, PermissionDenied
from app.models import AuditRecord, Job
from app.services import auditing, feedback, monitoring, qa
from app.services.caller import Caller, actor
from ingest.submit import submit_paths
from ingest.worker import Worker


def _users(c) -> tuple[Caller, Caller, Caller]:
    with c.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", "staff-password-1")
        accounts.add_user(s, "audrey", "auditor", "audit-password-1")
        accounts.add_collection(s, "hr")
        accounts.grant(s, "hr", role="staff")
    return (qa.caller_for(c, "sam", "ui"), qa.caller_for(c, "audrey", "ui"), qa.caller_for(c, "admin", "ui"))


def _refused_answer(c, who: Caller, question: str) -> int:
    """A real answer record: the empty collection gives no passage, so kb refuses (no model needed)."""
    res = qa.ask_blocking(c, who, question)
    assert res.refused and res.audit_seq
    return res.audit_seq


def test_feedback_is_a_feedback_record_tied_to_the_answer(container):
    sam, audrey, admin = _users(container)
    answer = _refused_answer(container, sam, "When is the canteen open?")
    receipt = feedback.give(container, sam, answer, "down", "  It should have found the canteen page.  ")
    rec = auditing.get(container, audrey, receipt.seq)
    assert (rec.kind, rec.action, rec.target, rec.actor) == ("feedback", "feedback", str(answer), "sam")
    assert rec.details["answer_seq"] == answer and rec.details["rating"] == "down"
    assert rec.comment == "It should have found the canteen page."  # sealed, opened for the auditor
    with container.sessions() as s:  # the comment is not stored in the clear
        row = s.scalar(select(AuditRecord).where(AuditRecord.seq == receipt.seq))
        assert b"canteen" not in (row.payload_sealed or b"") and "canteen" not in str(row.details)
    assert [v.seq for v in auditing.query(container, audrey, kind="feedback")] == [receipt.seq]

    # Changing one's mind: the latest rating counts, once per answer.
    feedback.give(container, sam, answer, "up")
    assert feedback.given(container, sam, [answer, 999]) == {answer: "up"}
    summary = feedback.summary(container, admin, days=1)
    assert (summary.helpful, summary.not_helpful, summary.rated) == (1, 0, 1)

    # Only the asker may rate; a bad rating, a long comment and a non-answer are refused with the reason.
    with pytest.raises(PermissionDenied, match="only the asker"):
        feedback.give(container, admin, answer, "up")
    with pytest.raises(KbError, match="Rating must be"):
        feedback.give(container, sam, answer, "meh")
    with pytest.raises(KbError, match="too long"):
        feedback.give(container, sam, answer, "up", "x" * (feedback.MAX_COMMENT + 1))
    with pytest.raises(KbError, match="No answer"):
        feedback.give(container, sam, receipt.seq, "up")
    with pytest.raises(PermissionDenied):
        feedback.summary(container, sam)


def _ask_record(c, who: Caller, outcome: str, total_ms: float | None, refused: bool = False) -> int:
    """An answer's audit record as qa writes it (the log is append-only: records are made now, and the
    dashboard is read as of a later ``now``)."""
    with c.sessions.begin() as s:
        return audit.append(s, c.vault, kind="query", action="ask", outcome=outcome, actor=actor(who),
                            details={"refused": refused, "timings": {} if total_ms is None else
                                     {"total_ms": total_ms, "first_token_ms": total_ms / 4}},
                            sealed={"question": "q"}).seq


def test_dashboard_series(container, tmp_path):
    sam, _audrey, admin = _users(container)
    for i in range(1, 11):  # ten answers at 100..1000 ms, one refusal, one error
        _ask_record(container, sam, "ok", 100.0 * i)
    _ask_record(container, sam, "refused", 5.0, refused=True)
    last = _ask_record(container, sam, "error", None)
    fb = feedback.give(container, sam, last - 1, "down")
    # Two documents: one processed, one still waiting.
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Annual leave is 25 days per calendar year.")
    list(submit_paths(container, [folder], "hr"))
    Worker(container).run_once()
    (folder / "b.txt").write_text("Travel claims are filed within ten working days.")
    list(submit_paths(container, [folder], "hr"))
    with container.sessions() as s:
        made = audit.utc(s.scalar(select(AuditRecord.created_at).where(AuditRecord.seq == fb.seq)))
        assert s.scalar(select(func.count()).select_from(Job)) == 2

    # Read a day later: everything above is in the day before the last.
    d = monitoring.dashboard(container, admin, days=7, now=made + timedelta(days=1))
    assert d.bucket == "day" and len(d.starts) == 7
    assert d.starts[-1] == (made + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert d.answers["answered"].values[-2:] == [10, 0]
    assert d.answers["refused"].values[-2] == 1 and d.answers["errors"].values[-2] == 1
    assert d.answers["p50_ms"].values[-2] == 500.0 and d.answers["p95_ms"].values[-2] == 1000.0
    assert d.answers["first_token_p50_ms"].values[-2] == 125.0
    assert d.answers["p50_ms"].values[-1] is None  # no answer that day: nothing measured, not zero
    assert d.totals["answered"] == 10 and d.totals["p95_ms"] == 1000.0 and d.totals["refused"] == 1
    assert d.feedback["not_helpful"].values[-2] == 1 and d.totals["helpful"] == 0
    assert d.queue["uploaded"].values[-2] == 2 and d.queue["processed"].values[-2] == 1
    assert d.queue["depth"].values[-2:] == [1, 1] and d.queue["depth"].values[0] == 0
    assert d.gauges.documents.get("indexed") == 1 and d.gauges.jobs.get("queued") == 1  # what /metrics reports

    hourly = monitoring.dashboard(container, admin, days=1, now=made)
    assert hourly.bucket == "hour" and len(hourly.starts) == 24
    assert sum(hourly.answers["answered"].values) == 10 and hourly.feedback["not_helpful"].values[-1] == 1
    assert hourly.totals["p50_ms"] == 500.0
    with pytest.raises(PermissionDenied):
        monitoring.dashboard(container, sam)
    with pytest.raises(KbError, match="1 to 90 days"):
        monitoring.dashboard(container, admin, days=0)
