"""What the chat page needs besides app.services.qa: the caller's collections, their own past questions,
and the sentence of a cited passage to highlight."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app import accounts, audit
from app.models import AuditRecord, Collection


@dataclass(frozen=True)
class PastQuestion:
    seq: int
    created_at: datetime
    question: str
    outcome: str


def readable_collections(container, user_name: str) -> list[tuple[int, str]]:
    """(id, name) of every collection the user may ask about, by name."""
    with container.sessions() as s:
        user = accounts.get_user(s, user_name)
        ids = accounts.readable_collection_ids(s, user)
        if not ids:
            return []
        rows = s.execute(select(Collection.id, Collection.name).where(Collection.id.in_(ids))
                         .order_by(Collection.name)).all()
        return [(int(i), str(n)) for i, n in rows]


def past_questions(container, user_name: str, limit: int = 20) -> list[PastQuestion]:
    """The user's own most recent questions (newest first), read back from the sealed query log."""
    out: list[PastQuestion] = []
    with container.sessions() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.kind == "query", AuditRecord.action == "ask",
                                                  AuditRecord.actor == user_name)
                         .order_by(AuditRecord.seq.desc()).limit(limit)).all()
        for r in rows:
            try:
                question = audit.open_payload(s, container.vault, r).get("question") or ""
            except Exception:  # a purged key: the record stays, its text is gone
                question = "(no longer readable)"
            out.append(PastQuestion(r.seq, r.created_at, question, r.outcome))
    return out


_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}")
_WORD = re.compile(r"\w{3,}", re.UNICODE)


def best_sentence(passage: str, answer: str) -> tuple[int, int] | None:
    """Character span of the passage sentence sharing most words with the answer (None: nothing shared)."""
    answer_words = {w.lower() for w in _WORD.findall(answer)}
    if not answer_words:
        return None
    best, best_score, start = None, 0, 0
    for m in [*_SENTENCE.finditer(passage), None]:
        end = m.start() if m else len(passage)
        words = {w.lower() for w in _WORD.findall(passage[start:end])}
        score = len(words & answer_words)
        if score > best_score:
            best, best_score = (start, end), score
        start = m.end() if m else len(passage)
    return best
