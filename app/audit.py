"""Tamper-evident audit log: every question and admin action appends one hash-chained record.

``hash = SHA-256(prev_hash || canonical record bytes)``. Sensitive text (questions, answers,
reasons) is sealed with a monthly data key; the hash covers the ciphertext, so the chain verifies
without keys. Appends are serialized (an advisory lock on PostgreSQL, the write lock on SQLite)
and ``seq`` is unique, so concurrent writers can never fork the chain.

The only way records leave the log is :func:`purge`: it refuses dates inside the retention period,
first appends an *anchor* record naming the last purged record's seq and hash, then deletes the
older records and the monthly data keys no remaining record needs. :func:`verify` starts the chain
from that anchor. Migration 0002 installs triggers that refuse UPDATE and DELETE on ``audit_log``
(and TRUNCATE on PostgreSQL) unless the rows being deleted are covered by the anchor that ends the
chain (on PostgreSQL the purge must also ``SET LOCAL kb.audit_purge = 'on'``).

The triggers stop the application and careless hands, whatever role they use. Against someone
who holds the table owner's or a superuser's login (they can disable triggers), the chain still
exposes changes, and recording ``kb audit verify``'s head (seq and hash) elsewhere, then checking
with ``--expect-head``, exposes a rewritten or cut tail. To make the app role itself unable to
change the log on PostgreSQL, let another role own the schema and grant the app only what it needs::

    -- run as the owner role (kb_owner), after `kb migrate` ran as kb_owner
    REVOKE ALL ON audit_log FROM kb_app;
    GRANT SELECT, INSERT ON audit_log TO kb_app;
    GRANT USAGE ON SEQUENCE audit_log_id_seq TO kb_app;
    -- kb_app can no longer UPDATE, DELETE or TRUNCATE the log, nor ALTER/disable its triggers;
    -- run `kb audit purge` with KB_DATABASE__URL naming kb_owner.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.orm import Session

from app.db import lock_until_commit
from app.errors import KbError, NotFound, PermissionDenied
from app.keys import Vault
from app.models import AuditRecord, DataKey

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x6B62_6175  # "kbau"
KINDS = ("query", "admin", "anchor")
READ_ALL_ROLES = frozenset({"admin", "auditor"})
OWN_ONLY_ROLES = frozenset({"staff"})
PURGE_SETTING = "kb.audit_purge"  # the PostgreSQL trigger lets a purge delete only with this set


class RecordLike(Protocol):
    """What hashing needs: an ORM row, a Core row of audit_log, or a copy of either."""

    seq: int
    kind: str
    action: str
    created_at: datetime
    actor: str | None
    actor_role: str | None
    client: str | None
    target: str | None
    outcome: str
    details: dict
    dek_id: str | None
    payload_sealed: bytes | None


def canonical_bytes(r: RecordLike) -> bytes:
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
    body = {
        "seq": r.seq, "kind": r.kind, "action": r.action,
        "created_at": created.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": r.actor, "actor_role": r.actor_role, "client": r.client, "target": r.target,
        "outcome": r.outcome, "details": r.details, "dek_id": r.dek_id,
        "payload_sealed": r.payload_sealed.hex() if r.payload_sealed else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, r: RecordLike) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(r)).hexdigest()


@dataclass
class Actor:
    name: str | None
    role: str | None
    client: str  # cli | ui | api | worker


# --- writing -----------------------------------------------------------------------------------
def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _lock_chain(session: Session) -> None:
    lock_until_commit(session, _PG_LOCK_KEY)  # before reading the chain head


def append(session: Session, vault: Vault, *, kind: str, action: str, actor: Actor, outcome: str = "ok",
           target: str | None = None, details: dict[str, Any] | None = None,
           sealed: dict[str, Any] | None = None) -> AuditRecord:
    """Append one record in the caller's transaction. `sealed` holds the fields only auditors may read."""
    if kind not in ("query", "admin"):
        raise ValueError(f"audit kind must be 'query' or 'admin', not {kind!r} (anchors come only from purge)")
    return _append(session, vault, kind=kind, action=action, actor=actor, outcome=outcome, target=target,
                   details=details, sealed=sealed)


def _append(session: Session, vault: Vault, *, kind: str, action: str, actor: Actor, outcome: str,
            target: str | None, details: dict[str, Any] | None, sealed: dict[str, Any] | None) -> AuditRecord:
    _lock_chain(session)
    last = session.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    dek_id = payload = None
    if sealed:
        dek_id, dek = audit_key(session, vault)
        payload = vault.seal(dek, json.dumps(sealed, ensure_ascii=False), "audit_log", seq, dek_id)
    rec = AuditRecord(
        seq=seq, kind=kind, action=action, created_at=datetime.now(UTC), actor=actor.name,
        actor_role=actor.role, client=actor.client, target=None if target is None else target[:255],
        outcome=outcome, details=details or {}, dek_id=dek_id, payload_sealed=payload, prev_hash=prev,
    )
    rec.hash = chain_hash(prev, rec)
    session.add(rec)
    session.flush()
    return rec


def audit_key(session: Session, vault: Vault) -> tuple[str, bytes]:
    """The data key for audit payloads: one per month, so a purge can drop old keys with old records."""
    marker = f"audit-{datetime.now(UTC):%Y-%m}-"
    # Looked up in data_keys (small) rather than the log; appends hold the chain lock, so two
    # writers never both create this month's key.
    dek_id = session.scalar(select(DataKey.id).where(DataKey.id.like(f"{marker}%")).order_by(DataKey.id).limit(1))
    if dek_id is not None:
        return dek_id, vault.data_key(session, dek_id)
    return vault.new_data_key_named(session, marker)


def open_payload(session: Session, vault: Vault, rec: RecordLike) -> dict[str, Any]:
    if rec.payload_sealed is None or rec.dek_id is None:
        return {}
    dek = vault.data_key(session, rec.dek_id)
    return json.loads(vault.open_text(dek, rec.payload_sealed, "audit_log", rec.seq, rec.dek_id))


# --- reading -----------------------------------------------------------------------------------
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


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _visible_actor(viewer: tuple[str, str] | None) -> str | None:
    """None: the viewer may read every record; a name: only that actor's records."""
    if viewer is None:  # trusted callers: the CLI run by an operator who holds the key file
        return None
    name, role = viewer
    if role in READ_ALL_ROLES:
        return None
    if role in OWN_ONLY_ROLES:
        return name
    raise PermissionDenied(f"The role {role!r} may not read the audit log. Ask an admin or an auditor.")


def _filtered(actor: str | None, since: datetime | None, until: datetime | None,
              kind: str | Iterable[str] | None, own: str | None) -> Select:
    stmt = select(AuditRecord.__table__)
    c = AuditRecord.__table__.c
    if actor is not None:
        stmt = stmt.where(c.actor == actor)
    if own is not None:
        stmt = stmt.where(c.actor == own)
    if since is not None:
        stmt = stmt.where(c.created_at >= _utc(since))
    if until is not None:
        stmt = stmt.where(c.created_at < _utc(until))
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        stmt = stmt.where(c.kind.in_(kinds))
    return stmt


def _view(session: Session, vault: Vault, row: RecordLike) -> AuditView:
    payload: dict[str, Any] = {}
    error = None
    try:
        payload = open_payload(session, vault, row)
    except KbError as exc:  # tampered or moved ciphertext, or a purged key: show the rest
        error = str(exc)
    reason = payload.get("refusal_reason") or payload.get("error") or payload.get("reason")
    return AuditView(
        seq=row.seq, created_at=_utc(row.created_at), kind=row.kind, action=row.action, actor=row.actor,
        actor_role=row.actor_role, client=row.client, target=row.target, outcome=row.outcome,
        details=dict(row.details or {}), question=payload.get("question"), answer=payload.get("answer"),
        reason=reason, hash=row.hash, prev_hash=row.prev_hash, payload_error=error,
    )


def _matches(v: AuditView, needle: str) -> bool:
    return any(needle in (s or "").casefold() for s in (v.question, v.answer, v.target, v.reason))


def iter_views(session: Session, vault: Vault, *, actor: str | None = None, since: datetime | None = None,
               until: datetime | None = None, contains: str | None = None, kind: str | Iterable[str] | None = None,
               viewer: tuple[str, str] | None = None, newest_first: bool = False,
               batch: int = 1000) -> Iterator[AuditView]:
    """Stream matching records, opening them in batches (keyset pages, so memory stays flat)."""
    own = _visible_actor(viewer)
    base = _filtered(actor, since, until, kind, own)
    seq_col = AuditRecord.__table__.c.seq
    needle = contains.casefold() if contains else None
    after: int | None = None
    while True:
        stmt = base
        if after is not None:
            stmt = stmt.where(seq_col < after if newest_first else seq_col > after)
        rows = session.execute(stmt.order_by(seq_col.desc() if newest_first else seq_col).limit(batch)).all()
        for row in rows:
            v = _view(session, vault, row)
            if needle is None or _matches(v, needle):
                yield v
        if len(rows) < batch:
            return
        after = rows[-1].seq


def query(session: Session, vault: Vault, *, actor: str | None = None, since: datetime | None = None,
          until: datetime | None = None, contains: str | None = None, kind: str | Iterable[str] | None = None,
          limit: int = 200, offset: int = 0, viewer: tuple[str, str] | None = None) -> list[AuditView]:
    """Matching records, newest first. `since` <= created_at < `until`; `contains` is a case-insensitive
    search of the opened question, answer, reason and target. Staff viewers see only their own records."""
    limit, offset = max(0, limit), max(0, offset)
    if contains:
        out: list[AuditView] = []
        for i, v in enumerate(iter_views(session, vault, actor=actor, since=since, until=until, contains=contains,
                                         kind=kind, viewer=viewer, newest_first=True)):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(v)
        return out
    stmt = _filtered(actor, since, until, kind, _visible_actor(viewer))
    seq_col = AuditRecord.__table__.c.seq
    rows = session.execute(stmt.order_by(seq_col.desc()).limit(limit).offset(offset)).all()
    return [_view(session, vault, row) for row in rows]


def get(session: Session, vault: Vault, seq: int, viewer: tuple[str, str] | None = None) -> AuditView:
    own = _visible_actor(viewer)
    row = session.execute(select(AuditRecord.__table__).where(AuditRecord.__table__.c.seq == seq)).first()
    if row is None:
        raise NotFound(f"No audit record with seq {seq}. `kb audit list` shows the recent ones.")
    if own is not None and row.actor != own:
        raise PermissionDenied(f"Audit record {seq} belongs to another user; staff may only read their own.")
    return _view(session, vault, row)


# --- verification ------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None
    last_seq: int | None
    last_hash: str | None
    seconds: float
    first_seq: int | None = None  # 1, or the record after the last purge anchor
    records_per_s: float = 0.0


@dataclass
class _Copy:
    """A detached, editable copy of a record, for trying what a changed field would hash to."""

    seq: int
    kind: str
    action: str
    created_at: datetime
    actor: str | None
    actor_role: str | None
    client: str | None
    target: str | None
    outcome: str
    details: dict
    dek_id: str | None
    payload_sealed: bytes | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: Any) -> _Copy:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


def _self_ok(row: Any) -> bool:
    return row.hash == chain_hash(row.prev_hash, row)


def verify(session: Session, *, batch: int = 5000, expect_head: tuple[int, str] | None = None) -> VerifyReport:
    """Walk the whole chain in seq order in one streamed query (one consistent snapshot).

    Finds the first record that was altered (its fields no longer hash to its hash), removed (a gap
    in seq, or a start that no purge anchor accounts for) or reordered (it hashes right only at
    another position). `expect_head` = (seq, hash) recorded earlier also exposes a cut tail.
    """
    t0 = time.perf_counter()
    stmt = select(AuditRecord.__table__).order_by(AuditRecord.__table__.c.seq).execution_options(yield_per=batch)
    first = prev = None
    failure: tuple[Any, _Copy] | None = None  # (previous row, offending row), diagnosed after the walk
    anchors: dict[int, str] = {}  # purged_through_seq -> hash of that record, from intact anchors
    head_hash: str | None = None  # the stored hash at expect_head's seq
    checked = 0
    for part in session.execute(stmt).partitions():
        for row in part:
            checked += 1
            intact = _self_ok(row)
            if first is None:
                first = _Copy.of(row)
                if not intact:
                    failure = (None, first)
            elif failure is None and (row.seq != prev.seq + 1 or row.prev_hash != prev.hash or not intact):
                failure = (prev, _Copy.of(row))
            if intact and row.kind == "anchor":  # keep walking after a failure: anchors decide the start
                d = row.details or {}
                if isinstance(d.get("purged_through_seq"), int) and isinstance(d.get("purged_through_hash"), str):
                    anchors[d["purged_through_seq"]] = d["purged_through_hash"]
            if expect_head and row.seq == expect_head[0]:
                head_hash = row.hash
            prev = row
    bad_seq, problem = None, None
    if first is not None:
        bad_seq, problem = _check_start(first, anchors)
    if bad_seq is None and failure is not None:
        bad_seq, problem = _diagnose(session, *failure)
    if bad_seq is None and expect_head is not None:
        bad_seq, problem = _check_head(expect_head, head_hash, first)
    seconds = time.perf_counter() - t0
    return VerifyReport(
        ok=bad_seq is None, checked=checked, first_bad_seq=bad_seq, problem=problem,
        last_seq=prev.seq if prev is not None else None, last_hash=prev.hash if prev is not None else None,
        seconds=round(seconds, 4), first_seq=first.seq if first is not None else None,
        records_per_s=round(checked / seconds, 1) if seconds > 0 else 0.0,
    )


def _check_head(expect: tuple[int, str], found: str | None, first: _Copy | None) -> tuple[int | None, str | None]:
    seq, want = expect
    if found is None:
        if first is not None and seq < first.seq:
            return None, None  # purged since it was recorded: nothing left to compare
        return seq, f"missing: record {seq}, the expected head, is not in the log (its tail was cut)"
    if found != want:
        return seq, f"altered: record {seq} has another hash than the expected head (the log was rewritten)"
    return None, None


def _span(a: int, b: int) -> str:
    return f"record {a} was" if a == b else f"records {a}..{b} were"


def _check_start(first: _Copy, anchors: dict[int, str]) -> tuple[int | None, str | None]:
    if first.seq == 1:
        if first.prev_hash != GENESIS:
            return 1, "altered: the first record does not start from the genesis hash"
        return None, None
    anchored = anchors.get(first.seq - 1)
    if anchored is None:
        # The first missing record follows the furthest purge that does account for what is gone.
        gone_from = max((b for b in anchors if b < first.seq), default=0) + 1
        return gone_from, (f"missing: {_span(gone_from, first.seq - 1)} not in the log and no purge anchor "
                           "records the removal")
    if first.prev_hash != anchored:
        return first.seq, (f"missing: seq {first.seq} does not link to the hash the purge anchor recorded for "
                           f"seq {first.seq - 1}")
    return None, None


def _diagnose(session: Session, prev: Any, row: _Copy) -> tuple[int, str]:
    intact = _self_ok(row)
    if not intact:
        original = _original_seq(session, row)
        if original is not None and original != row.seq:
            return min(row.seq, original), (f"reordered: the record stored as seq {row.seq} was written as "
                                            f"seq {original}")
    if prev is not None and row.seq != prev.seq + 1:
        return prev.seq + 1, (f"missing: {_span(prev.seq + 1, row.seq - 1)} removed (seq jumps from {prev.seq} "
                              f"to {row.seq})")
    if not intact:
        return row.seq, "altered: its fields no longer match its hash"
    # Intact itself but linked to something other than its predecessor: the predecessor was changed
    # and its hash recomputed, since this record still names the original hash.
    assert prev is not None
    return prev.seq, ("altered: its hash was recomputed after a change (the next record links to a "
                      "different hash)")


def _original_seq(session: Session, row: _Copy, window: int = 1000) -> int | None:
    """The seq at which a record's content would hash correctly, if only its position changed."""
    c = AuditRecord.__table__.c
    candidates: list[int] = []
    pred = session.execute(select(c.seq).where(c.hash == row.prev_hash)).scalar()
    succ = session.execute(select(c.seq).where(c.prev_hash == row.hash).limit(1)).scalar()
    if pred is not None:
        candidates += [pred + 1, pred]
    if succ is not None:
        candidates += [succ - 1, succ]
    candidates += [s for d in range(1, window + 1) for s in (row.seq - d, row.seq + d) if s >= 1]
    for s in candidates:
        if chain_hash(row.prev_hash, replace(row, seq=s)) == row.hash:
            return s
    return None


# --- export ------------------------------------------------------------------------------------
EXPORT_COLUMNS = ["seq", "created_at", "kind", "action", "actor", "actor_role", "client", "target", "outcome",
                  "question", "answer", "reason", "details", "prev_hash", "hash"]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    s = json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, dict | list) else str(value)
    # A question is user input: never let a spreadsheet run it as a formula.
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def export(session: Session, vault: Vault, fmt: str, out: TextIO, **filters: Any) -> int:
    """Write matching records, oldest first, as CSV or JSON lines; returns how many were written.
    `filters` are those of :func:`query` (actor, since, until, contains, kind, viewer) without paging."""
    if fmt not in ("csv", "jsonl"):
        raise KbError(f"Unknown export format {fmt!r}: use csv or jsonl.")
    allowed = {"actor", "since", "until", "contains", "kind", "viewer"}
    unknown = set(filters) - allowed
    if unknown:
        raise KbError(f"Unknown export filter(s): {', '.join(sorted(unknown))}.")
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    n = 0
    for v in iter_views(session, vault, newest_first=False, **filters):
        d = asdict(v)
        if writer is not None:
            writer.writerow([_csv_cell(d[c]) for c in EXPORT_COLUMNS])
        else:
            d["created_at"] = v.created_at.isoformat()
            out.write(json.dumps({c: d[c] for c in EXPORT_COLUMNS}, ensure_ascii=False) + "\n")
        n += 1
    return n


# --- retention ---------------------------------------------------------------------------------
@dataclass
class PurgeReport:
    purged: int
    first_purged_seq: int | None
    last_purged_seq: int | None
    anchor_seq: int
    keys_dropped: int
    before: datetime
    details: dict[str, Any] = field(default_factory=dict)


def purge(session: Session, vault: Vault, before: datetime, actor: Actor, retention_days: int) -> PurgeReport:
    """Delete the records created before `before`, in the caller's transaction, keeping the chain verifiable.

    Refuses a date inside the retention period and a chain that does not verify (purging would
    destroy the evidence). Always appends a record: an anchor naming the last purged seq and hash
    (or, when nothing is old enough, a plain admin record saying so).
    """
    before = _utc(before)
    assert before is not None
    latest_allowed = datetime.now(UTC) - timedelta(days=retention_days)
    if before > latest_allowed:
        raise KbError(f"Refusing to purge records newer than the retention period ({retention_days} days): the "
                      f"latest allowed date is {latest_allowed:%Y-%m-%d %H:%M} UTC. Pick an earlier --before.")
    _lock_chain(session)  # no appends between the check, the anchor and the delete
    report = verify(session)
    if not report.ok:
        raise KbError(f"The audit log does not verify (seq {report.first_bad_seq}: {report.problem}); "
                      "refusing to purge. Investigate with `kb audit verify` first.")
    c = AuditRecord.__table__.c
    # Purge a prefix of the chain: everything before the first record at or after `before`.
    keep_from = session.scalar(select(func.min(c.seq)).where(c.created_at >= before))
    upper = (keep_from - 1) if keep_from is not None else report.last_seq
    start = report.first_seq
    if upper is None or start is None or upper < start:
        rec = append(session, vault, kind="admin", action="audit.purge", actor=actor, outcome="ok",
                     target=f"before {before:%Y-%m-%d}",
                     details={"before": before.isoformat(), "purged_count": 0, "retention_days": retention_days})
        return PurgeReport(0, None, None, rec.seq, 0, before)
    last_hash = session.scalar(select(c.hash).where(c.seq == upper))
    count = session.scalar(select(func.count()).select_from(AuditRecord.__table__).where(c.seq <= upper))
    details = {"before": before.isoformat(), "first_purged_seq": start, "purged_through_seq": upper,
               "purged_through_hash": last_hash, "purged_count": count, "retention_days": retention_days}
    anchor = _append(session, vault, kind="anchor", action="audit.purge", actor=actor, outcome="ok",
                     target=f"seq {start}..{upper}", details=details, sealed=None)
    if _dialect(session) == "postgresql":
        session.execute(text(f"SET LOCAL {PURGE_SETTING} = 'on'"))
    session.execute(delete(AuditRecord.__table__).where(c.seq <= upper))
    if _dialect(session) == "postgresql":
        session.execute(text(f"SET LOCAL {PURGE_SETTING} = 'off'"))
    # Crypto-shred: monthly keys whose every record is gone take the purged text with them (backups too).
    still_used = select(AuditRecord.__table__.c.dek_id).where(AuditRecord.__table__.c.dek_id.is_not(None))
    dropped = session.execute(
        delete(DataKey).where(DataKey.id.like("audit-%"), DataKey.id.not_in(still_used))
    ).rowcount or 0
    session.flush()
    return PurgeReport(count, start, upper, anchor.seq, dropped, before, details)
