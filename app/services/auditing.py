"""Reading the audit log: filtered listings, one record, export, chain checks and purge, for the CLI and the UI.

The chain itself (hashing, append, verify, purge) is the kernel's, in app.audit; this module decides
who reads what and opens the sealed questions and answers. Admins and auditors read every record;
staff only their own. Every function takes the caller (a Principal) and checks its role.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Select, select
from sqlalchemy.exc import DBAPIError

from app import audit
from app.errors import KbError, NotFound, PermissionDenied
from app.models import AuditRecord
from app.services.caller import Principal, require_role
from app.services.caller import actor as as_actor  # `actor` is also a filter's name here
from app.services.search import Passage, hydrate
from retrieval.types import SearchHit

KINDS = audit.KINDS
READ_ALL_ROLES = ("admin", "auditor")
OWN_ONLY_ROLES = ("staff",)
EXPORT_COLUMNS = ["seq", "created_at", "kind", "action", "actor", "actor_role", "client", "target", "outcome",
                  "question", "answer", "reason", "details", "prev_hash", "hash"]
EXPORT_FORMATS = ("csv", "jsonl")


@dataclass
class AuditView:
    """One record as an auditor reads it (sealed fields opened)."""

    seq: int
    created_at: datetime
    kind: str
    action: str
    actor: str | None
    actor_role: str | None
    client: str | None
    target: str | None
    outcome: str
    details: dict[str, Any]
    question: str | None
    answer: str | None
    reason: str | None
    hash: str
    prev_hash: str = ""
    payload_error: str | None = None  # set when the sealed part could not be opened
    comment: str | None = None  # a feedback record's comment (sealed)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None
    last_seq: int | None
    seconds: float
    at: float  # time.time() of the check
    last_good_seq: int | None = None  # the last record proven intact (None: none, e.g. a wiped log)


_last_checks: dict[str, ChainCheck] = {}  # by database URL: one process may serve several (tests do)
_check_lock = threading.Lock()


# --- who sees what -----------------------------------------------------------------------------
def _own_only(who: Principal) -> str | None:
    """None: the caller may read every record; a name: only that actor's records."""
    require_role(who, *READ_ALL_ROLES, *OWN_ONLY_ROLES)
    return None if who.role in READ_ALL_ROLES else who.name


def _filtered(actor_name: str | None, since: datetime | None, until: datetime | None,
              kind: str | Iterable[str] | None, own: str | None) -> Select:
    stmt = select(AuditRecord.__table__)
    c = AuditRecord.__table__.c
    if actor_name is not None:
        stmt = stmt.where(c.actor == actor_name)
    if own is not None:
        stmt = stmt.where(c.actor == own)
    if since is not None:
        stmt = stmt.where(c.created_at >= audit.utc(since))
    if until is not None:
        stmt = stmt.where(c.created_at < audit.utc(until))
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        stmt = stmt.where(c.kind.in_(kinds))
    return stmt


def _view(session, vault, row: Any) -> AuditView:
    payload: dict[str, Any] = {}
    error = None
    try:
        payload = audit.open_payload(session, vault, row)
    except KbError as exc:  # tampered or moved ciphertext, or a purged key: show the rest
        error = str(exc)
    reason = payload.get("refusal_reason") or payload.get("error") or payload.get("reason")
    return AuditView(
        seq=row.seq, created_at=audit.utc(row.created_at), kind=row.kind, action=row.action, actor=row.actor,
        actor_role=row.actor_role, client=row.client, target=row.target, outcome=row.outcome,
        details=dict(row.details or {}), question=payload.get("question"), answer=payload.get("answer"),
        reason=reason, hash=row.hash, prev_hash=row.prev_hash, payload_error=error, comment=payload.get("comment"),
    )


def _matches(v: AuditView, needle: str) -> bool:
    return any(needle in (s or "").casefold() for s in (v.question, v.answer, v.target, v.reason, v.comment))


# --- reading -----------------------------------------------------------------------------------
def iter_views(container, session, who: Principal, *, actor: str | None = None, since: datetime | None = None,
               until: datetime | None = None, contains: str | None = None, kind: str | Iterable[str] | None = None,
               newest_first: bool = False, batch: int = 1000) -> Iterator[AuditView]:
    """Stream the matching records `who` may read, opening them in batches (keyset pages, so memory stays
    flat), in `session`."""
    base = _filtered(actor, since, until, kind, _own_only(who))
    seq_col = AuditRecord.__table__.c.seq
    needle = contains.casefold() if contains else None
    after: int | None = None
    while True:
        stmt = base
        if after is not None:
            stmt = stmt.where(seq_col < after if newest_first else seq_col > after)
        rows = session.execute(stmt.order_by(seq_col.desc() if newest_first else seq_col).limit(batch)).all()
        for row in rows:
            v = _view(session, container.vault, row)
            if needle is None or _matches(v, needle):
                yield v
        if len(rows) < batch:
            return
        after = rows[-1].seq


def query(container, who: Principal, *, actor: str | None = None, since: datetime | None = None,
          until: datetime | None = None, contains: str | None = None, kind: str | Iterable[str] | None = None,
          limit: int = 200, offset: int = 0) -> list[AuditView]:
    """Matching records, newest first. `since` <= created_at < `until`; `contains` is a case-insensitive
    search of the opened question, answer, reason and target. Staff see only their own records."""
    own = _own_only(who)
    limit, offset = max(0, limit), max(0, offset)
    actor, contains, kind = actor or None, contains or None, (None if kind == "" else kind)  # "": the UI's "any"
    with container.sessions() as s:
        if contains:
            out: list[AuditView] = []
            views = iter_views(container, s, who, actor=actor, since=since, until=until, contains=contains,
                               kind=kind, newest_first=True)
            for i, v in enumerate(views):
                if i >= offset + limit:
                    break
                if i >= offset:
                    out.append(v)
            return out
        seq_col = AuditRecord.__table__.c.seq
        stmt = _filtered(actor, since, until, kind, own).order_by(seq_col.desc()).limit(limit).offset(offset)
        return [_view(s, container.vault, row) for row in s.execute(stmt).all()]


def get(container, who: Principal, seq: int) -> AuditView:
    own = _own_only(who)
    with container.sessions() as s:
        row = s.execute(select(AuditRecord.__table__).where(AuditRecord.__table__.c.seq == seq)).first()
        if row is None:
            raise NotFound(f"No audit record with seq {seq}. `kb audit list` shows the recent ones.")
        if own is not None and row.actor != own:
            raise PermissionDenied(f"Audit record {seq} belongs to another user; staff may only read their own.")
        return _view(s, container.vault, row)


def retrieved_passages(container, details: dict[str, Any]) -> list[tuple[dict[str, Any], Passage | None]]:
    """Each retrieved chunk of a query record with its text today (None when the chunk was deleted since)."""
    retrieved = [r for r in (details or {}).get("retrieved", []) if isinstance(r, dict) and "chunk_id" in r]
    if not retrieved:
        return []
    hits = [SearchHit(int(r["chunk_id"]), float(r.get("score") or 0.0), r.get("dense"), None) for r in retrieved]
    with container.sessions() as s:
        found = {p.chunk_id: p for p in hydrate(container, s, hits)}
    return [(r, found.get(int(r["chunk_id"]))) for r in retrieved]


# --- export ------------------------------------------------------------------------------------
def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    s = json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, dict | list) else str(value)
    # A question is user input: never let a spreadsheet run it as a formula.
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def export(container, who: Principal, fmt: str, out: TextIO, *, actor: str | None = None,
           since: datetime | None = None, until: datetime | None = None, contains: str | None = None,
           kind: str | Iterable[str] | None = None) -> int:
    """Write the matching records `who` may read, oldest first, as CSV or JSON lines, and log the export
    (in the same transaction); returns how many were written. The filters are those of :func:`query`."""
    if fmt not in EXPORT_FORMATS:
        raise KbError(f"Unknown export format {fmt!r}: use csv or jsonl.")
    _own_only(who)
    filters = {"actor": actor or None, "since": since, "until": until, "contains": contains or None,
               "kind": None if kind == "" else kind}
    writer = csv.writer(out) if fmt == "csv" else None
    with container.sessions.begin() as s:
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        n = 0
        for v in iter_views(container, s, who, newest_first=False, **filters):
            d = asdict(v)
            if writer is not None:
                writer.writerow([_csv_cell(d[c]) for c in EXPORT_COLUMNS])
            else:
                d["created_at"] = v.created_at.isoformat()
                out.write(json.dumps({c: d[c] for c in EXPORT_COLUMNS}, ensure_ascii=False) + "\n")
            n += 1
        logged = {k: (v.isoformat() if isinstance(v, datetime) else v)
                  for k, v in filters.items() if v is not None and k != "contains"}
        audit.append(s, container.vault, kind="admin", action="audit.export", actor=as_actor(who), target=fmt,
                     details={"records": n, **logged, "contains_filter": bool(contains)})
    return n


def export_csv(container, who: Principal, **filters: Any) -> tuple[bytes, int]:
    """CSV of every record matching ``filters`` (oldest first) and how many rows it has."""
    buf = io.StringIO()
    n = export(container, who, "csv", buf, **filters)
    return buf.getvalue().encode("utf-8-sig"), n  # the BOM makes spreadsheet programs read UTF-8


# --- the chain ---------------------------------------------------------------------------------
def verify(container, who: Principal, *, expect_head: tuple[int, str] | None = None) -> audit.VerifyReport:
    """Walk the whole chain now, under the chain key and against the latest head checkpoint, and remember
    the result for every session of this process."""
    require_role(who, *READ_ALL_ROLES)
    with _check_lock, container.sessions() as s:
        rep = audit.verify_checked(s, container.vault, expect_head=expect_head)
        _last_checks[container.settings.database_url] = ChainCheck(
            rep.ok, rep.checked, rep.first_bad_seq, rep.problem, rep.last_seq, rep.seconds, time.time(),
            rep.last_good_seq)
    return rep


def last_check(container) -> ChainCheck | None:
    return _last_checks.get(container.settings.database_url)


def purge(container, who: Principal, before: datetime) -> audit.PurgeReport:
    """Delete the records created before `before` (refused inside KB_AUDIT__RETENTION_DAYS); see app.audit.purge."""
    require_role(who, "admin")
    try:
        with container.sessions.begin() as s:
            return audit.purge(s, container.vault, before, as_actor(who), container.settings.audit.retention_days)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise KbError("The database refused the purge: kb is logged in as the application role, which may not "
                      "delete audit records (kb db setup-roles). Run `kb audit purge` with KB_DATABASE__URL naming "
                      "the owner role or a DBA login.") from None
