"""Tamper-evident audit log, the chain: every question and admin action appends one hash-chained record.

``hash = SHA-256(prev_hash || canonical record bytes)``, the bytes being the record's
:data:`HASHED_FIELDS` (:func:`canonical_bytes`). Sensitive text (questions, answers,
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

This module is the kernel's part: hashing, appending, opening a sealed payload, verifying and
purging. Reading the log (filters, views, export, and who may see which records) is
``app.services.auditing``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from app.db import lock_until_commit
from app.errors import KbError
from app.keys import Vault
from app.models import AuditRecord, DataKey

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x6B62_6175  # "kbau"
KINDS = ("query", "admin", "feedback", "anchor")  # feedback: a rating of an answer (app.services.feedback)
PURGE_SETTING = "kb.audit_purge"  # the PostgreSQL trigger lets a purge delete only with this set

# The one list of what a record's hash covers (besides prev_hash, which prefixes the bytes). Every
# column of audit_log is here except id, prev_hash and hash; tests/app/test_audit.py checks that.
HASHED_FIELDS = ("seq", "kind", "action", "created_at", "actor", "actor_role", "client", "target", "outcome",
                 "details", "dek_id", "payload_sealed")
CHAIN_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")  # what verify reads of each record


def utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime; naive values (SQLite hands them back) are taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_is(value: Any) -> Any:
    return value


# How a field is written into the canonical bytes, where that is not the value itself. Changing any
# of this changes every hash: existing chains would no longer verify.
_CANONICAL: dict[str, Callable[[Any], Any]] = {
    "created_at": lambda v: utc(v).isoformat(timespec="microseconds"),
    "payload_sealed": lambda v: v.hex() if v else None,
}


def canonical_bytes(r: Any) -> bytes:
    """The bytes a record's hash covers: its HASHED_FIELDS as sorted compact JSON.

    `r` is anything with those attributes: an ORM row, a Core row of audit_log, or a copy of either."""
    body = {f: _CANONICAL.get(f, _as_is)(getattr(r, f)) for f in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, r: Any) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(r)).hexdigest()


class SealedRecord(Protocol):
    """What opening a record's sealed part needs (its seq and key id are bound as associated data)."""

    seq: int
    dek_id: str | None
    payload_sealed: bytes | None


@dataclass
class Actor:
    name: str | None
    role: str | None
    client: str  # cli | ui | api | worker
    key_id: int | None = None  # the API key that acted (client api); recorded in details as api_key_id


# --- writing -----------------------------------------------------------------------------------
def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _lock_chain(session: Session) -> None:
    lock_until_commit(session, _PG_LOCK_KEY)  # before reading the chain head


def append(session: Session, vault: Vault, *, kind: str, action: str, actor: Actor, outcome: str = "ok",
           target: str | None = None, details: dict[str, Any] | None = None,
           sealed: dict[str, Any] | None = None) -> AuditRecord:
    """Append one record in the caller's transaction. `sealed` holds the fields only auditors may read."""
    if kind not in ("query", "admin", "feedback"):
        raise ValueError(f"audit kind must be 'query', 'admin' or 'feedback', not {kind!r} (anchors come only "
                         "from purge)")
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
        outcome=outcome, details=_with_key(details, actor), dek_id=dek_id, payload_sealed=payload, prev_hash=prev,
    )
    rec.hash = chain_hash(prev, rec)
    session.add(rec)
    session.flush()
    return rec


def _with_key(details: dict[str, Any] | None, actor: Actor) -> dict[str, Any]:
    details = dict(details or {})
    if actor.key_id is not None:
        details["api_key_id"] = actor.key_id
    return details


def audit_key(session: Session, vault: Vault) -> tuple[str, bytes]:
    """The data key for audit payloads: one per month, so a purge can drop old keys with old records."""
    marker = f"audit-{datetime.now(UTC):%Y-%m}-"
    # Looked up in data_keys (small) rather than the log; appends hold the chain lock, so two
    # writers never both create this month's key.
    dek_id = session.scalar(select(DataKey.id).where(DataKey.id.like(f"{marker}%")).order_by(DataKey.id).limit(1))
    if dek_id is not None:
        return dek_id, vault.data_key(session, dek_id)
    return vault.new_data_key_named(session, marker)


def open_payload(session: Session, vault: Vault, rec: SealedRecord) -> dict[str, Any]:
    if rec.payload_sealed is None or rec.dek_id is None:
        return {}
    dek = vault.data_key(session, rec.dek_id)
    return json.loads(vault.open_text(dek, rec.payload_sealed, "audit_log", rec.seq, rec.dek_id))


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


class _Copy:
    """A detached copy of a record's CHAIN_FIELDS, with `changes` applied: for trying what a record
    would hash to at another position."""

    __slots__ = CHAIN_FIELDS

    def __init__(self, row: Any, **changes: Any) -> None:
        for f in CHAIN_FIELDS:
            setattr(self, f, changes[f] if f in changes else getattr(row, f))


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
                first = _Copy(row)
                if not intact:
                    failure = (None, first)
            elif failure is None and (row.seq != prev.seq + 1 or row.prev_hash != prev.hash or not intact):
                failure = (prev, _Copy(row))
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
        if chain_hash(row.prev_hash, _Copy(row, seq=s)) == row.hash:
            return s
    return None


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
    before = utc(before)
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
