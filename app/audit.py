"""Tamper-evident audit log, the chain: every question and admin action appends one keyed, chained record.

``hash = HMAC-SHA256(chain key, prev_hash || canonical record bytes)``, the bytes being the record's
:data:`HASHED_FIELDS` (:func:`canonical_bytes`). The chain key is derived (HKDF) from the master key,
which someone holding only the database (or a copy of it, or a backup of it) does not have: they can
neither forge a record or a purge anchor nor rewrite a tail and recompute its hashes. Sensitive text
(questions, answers, reasons) is sealed with a monthly data key; the link covers the ciphertext.
Appends are serialized (an advisory lock on PostgreSQL, the write lock on SQLite) and ``seq`` is
unique, so concurrent writers can never fork the chain.

A chain alone cannot see its own end cut off, nor being emptied. So after every commit that
appended, the new head (seq, hash) is checkpointed outside the database: an HMACed head file in
the data dir's keys area (:class:`CheckpointStore`) and, when ``KB_AUDIT__CHECKPOINT_LOG`` names
one, an append-only file or syslog. :func:`verify` compares the log with the latest checkpoint and
reports a cut tail or a wiped log with the last good seq.

The only way records leave the log is :func:`purge`: it refuses dates inside the retention period,
first appends an *anchor* record (keyed like every record) naming the last purged record's seq and
hash, then deletes the older records and the monthly data keys no remaining record needs.
:func:`verify` starts the chain from that anchor and checks that the anchor's date was past the
retention period it names. Migration 0002 installs triggers that refuse UPDATE and DELETE on
``audit_log`` (and TRUNCATE on PostgreSQL) unless the rows being deleted are covered by the anchor
that ends the chain. On PostgreSQL, `kb db setup-roles` (app.services.db_roles) gives the tables
to an owner role and leaves the application role only SELECT and INSERT on ``audit_log``, so the
app role can neither delete nor disable the triggers; purges run as the owner.

Logs written before the keyed chain (unkeyed SHA-256 links) are re-linked under the key by migration
0005 after their old chain verifies (:func:`relink`), which records an ``audit.relink`` event.

This module is the kernel's part: keys, hashing, appending, checkpoints, opening a sealed payload,
verifying and purging. Reading the log (filters, views, export, and who may see which records) is
``app.services.auditing``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import syslog
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from app.db import lock_until_commit
from app.errors import KbError
from app.keys import KeyRing, Vault
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
    """The unkeyed link of logs written before the keyed chain: only :func:`relink` still reads it."""
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(r)).hexdigest()


def _derive(ring: KeyRing, info: str) -> bytes:
    # The first master-key version: rotation adds versions but keeps old ones in the key file, so
    # the chain keeps verifying across rotations without re-linking.
    master = ring.versions[min(ring.versions)]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(master)


def chain_key(ring: KeyRing) -> bytes:
    """The key every link is an HMAC under (a database-only attacker does not have the master key)."""
    return _derive(ring, "kb-audit-chain/v1")


def link_hash(key: bytes, prev_hash: str, r: Any) -> str:
    return hmac.new(key, prev_hash.encode() + canonical_bytes(r), hashlib.sha256).hexdigest()


# --- checkpoints of the head, outside the database ----------------------------------------------
HEAD_FORMAT = "kb-audit-head-1"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str  # ISO time it was written
    source: str  # the file it came from


def database_id(url: URL) -> str:
    """Which database a checkpoint belongs to: backend, host, port and name (not the role that logged in)."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{Path(url.database or '').resolve()}"
    return f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database or ''}"


class CheckpointStore:
    """Where the heads go: one HMACed JSON file per database under `directory` (kept to the highest
    seq any process committed), plus optionally every head appended to `external` (a file the
    operator made append-only, e.g. with `chattr +a`, or ``syslog``)."""

    def __init__(self, directory: Path, external: str | None = None):
        self.directory = Path(directory)
        self.external = external or None

    def _path(self, db_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(db_id.encode()).hexdigest()[:16]}.json"

    @staticmethod
    def _mac(key: bytes, body: dict[str, Any]) -> str:
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(key, b"kb-audit-head\x00" + raw, hashlib.sha256).hexdigest()

    def _signed(self, key: bytes, db_id: str, seq: int, hash_: str) -> dict[str, Any]:
        body = {"format": HEAD_FORMAT, "database": db_id, "seq": seq, "hash": hash_,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}
        return {**body, "mac": self._mac(key, body)}

    def _parse(self, key: bytes, db_id: str, line: str) -> dict[str, Any] | None:
        """A checkpoint's body when its MAC and database match; None for anything else."""
        try:
            d = json.loads(line)
            body = {k: d[k] for k in ("format", "database", "seq", "hash", "at")}
            mac = d["mac"]
        except (ValueError, KeyError, TypeError):
            return None
        if body["format"] != HEAD_FORMAT or body["database"] != db_id or not isinstance(body["seq"], int):
            return None
        return body if isinstance(mac, str) and hmac.compare_digest(mac, self._mac(key, body)) else None

    def write(self, key: bytes, db_id: str, seq: int, hash_: str) -> None:
        """Record a committed head; never moves the head file backwards (another process may be ahead)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(db_id)
        signed = self._signed(key, db_id, seq, hash_)
        line = json.dumps(signed, sort_keys=True)
        lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            current = self._read_file(key, db_id, path)
            if current is None or current.seq < seq:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(line + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            if self.external == "syslog":
                syslog.syslog(syslog.LOG_AUTH | syslog.LOG_NOTICE, f"kb-audit-head {line}")
            elif self.external:
                fd = os.open(self.external, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as f:
                    f.write(line + "\n")
        finally:
            os.close(lock_fd)  # releases the lock

    def forget(self, db_id: str) -> bool:
        """Drop this database's head file (its log was emptied on purpose: `kb migrate --revision base`).
        An external checkpoint log keeps its lines: it is append-only by design."""
        try:
            self._path(db_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def _read_file(self, key: bytes, db_id: str, path: Path) -> Checkpoint | None:
        try:
            text_ = path.read_text()
        except FileNotFoundError:
            return None
        body = self._parse(key, db_id, text_.strip())
        if body is None:
            raise TamperedCheckpoint(f"The audit head checkpoint {path} does not authenticate (edited or "
                                     "replaced): the log cannot be checked against it.")
        return Checkpoint(body["seq"], body["hash"], body["at"], str(path))

    def latest(self, key: bytes, db_id: str) -> Checkpoint | None:
        """The highest authentic head of this database, from the head file and the external log."""
        found = [cp for cp in [self._read_file(key, db_id, self._path(db_id))] if cp is not None]
        if self.external and self.external != "syslog":
            with contextlib.suppress(FileNotFoundError), open(self.external) as f:
                for line in f:  # lines of other databases, or damaged ones, are skipped
                    body = self._parse(key, db_id, line)
                    if body is not None:
                        found.append(Checkpoint(body["seq"], body["hash"], body["at"], self.external))
        return max(found, key=lambda cp: cp.seq, default=None)


class TamperedCheckpoint(KbError):
    """A head checkpoint whose MAC fails."""


# Which store a vault's appends checkpoint to (set once by the composition root). Keyed by the vault
# object, not a global setting: tests and tools that build a bare Vault simply write no checkpoints.
_stores: weakref.WeakKeyDictionary[Vault, CheckpointStore] = weakref.WeakKeyDictionary()


def use_checkpoints(vault: Vault, store: CheckpointStore) -> None:
    _stores[vault] = store


def checkpoint_store(vault: Vault) -> CheckpointStore | None:
    return _stores.get(vault)


def latest_checkpoint(session: Session, vault: Vault) -> Checkpoint | None:
    store = _stores.get(vault)
    if store is None:
        return None
    return store.latest(chain_key(vault.ring), database_id(session.get_bind().url))


_PENDING = "kb_audit_head"  # session.info key: the head appended in the open transaction


def _checkpoint_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    store, key, db_id, seq, hash_ = pending
    try:
        store.write(key, db_id, seq, hash_)
    except (OSError, TamperedCheckpoint) as exc:  # the record is committed; verify reports a bad checkpoint
        import logging

        logging.getLogger(__name__).error("could not write the audit head checkpoint: %s", exc)


def _forget_pending(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING, None)


def _remember_head(session: Session, vault: Vault | None, key: bytes, seq: int, hash_: str) -> None:
    store = _stores.get(vault) if vault is not None else None
    if store is None:
        return
    if not session.info.get("kb_audit_listens"):
        event.listen(session, "after_commit", _checkpoint_after_commit)
        event.listen(session, "after_rollback", _forget_pending)
        session.info["kb_audit_listens"] = True
    session.info[_PENDING] = (store, key, database_id(session.get_bind().url), seq, hash_)


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


def _append(session: Session, vault: Vault | None, *, kind: str, action: str, actor: Actor, outcome: str,
            target: str | None, details: dict[str, Any] | None, sealed: dict[str, Any] | None,
            key: bytes | None = None) -> AuditRecord:
    """`key` defaults to the vault's chain key; the migration that re-links has the key but no vault."""
    key = key if key is not None else chain_key(_need(vault).ring)
    _lock_chain(session)
    last = session.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    dek_id = payload = None
    if sealed:
        vault = _need(vault)
        dek_id, dek = audit_key(session, vault)
        payload = vault.seal(dek, json.dumps(sealed, ensure_ascii=False), "audit_log", seq, dek_id)
    rec = AuditRecord(
        seq=seq, kind=kind, action=action, created_at=datetime.now(UTC), actor=actor.name,
        actor_role=actor.role, client=actor.client, target=None if target is None else target[:255],
        outcome=outcome, details=_with_key(details, actor), dek_id=dek_id, payload_sealed=payload, prev_hash=prev,
    )
    rec.hash = link_hash(key, prev, rec)
    session.add(rec)
    session.flush()
    _remember_head(session, vault, key, seq, rec.hash)
    return rec


def _need(vault: Vault | None) -> Vault:
    if vault is None:
        raise ValueError("sealing an audit payload needs the vault")
    return vault


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
    last_good_seq: int | None = None  # the last record up to which the log is proven intact
    checkpoint_seq: int | None = None  # the head checkpoint compared against, if any
    checkpoint_source: str | None = None


class _Copy:
    """A detached copy of a record's CHAIN_FIELDS, with `changes` applied: for trying what a record
    would hash to at another position."""

    __slots__ = CHAIN_FIELDS

    def __init__(self, row: Any, **changes: Any) -> None:
        for f in CHAIN_FIELDS:
            setattr(self, f, changes[f] if f in changes else getattr(row, f))


def _self_ok(key: bytes, row: Any) -> bool:
    return hmac.compare_digest(row.hash, link_hash(key, row.prev_hash, row))


def _anchor_problem(row: Any) -> str | None:
    """Why an authentic anchor still must not count (it purged inside the retention period it names)."""
    d = row.details or {}
    try:
        before = utc(datetime.fromisoformat(d["before"]))
        days = int(d["retention_days"])
    except (KeyError, TypeError, ValueError):
        return "altered: a purge anchor without its date and retention period"
    assert before is not None
    if before > utc(row.created_at) - timedelta(days=days):
        return f"altered: the purge anchor removed records inside its own retention period ({days} days)"
    return None


def verify(session: Session, key: bytes, *, batch: int = 5000, expect_head: tuple[int, str] | None = None,
           checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Walk the whole chain in seq order in one streamed query (one consistent snapshot).

    Finds the first record that was altered (its fields no longer give its keyed link), removed (a
    gap in seq, or a start that no authentic purge anchor accounts for) or reordered (it links right
    only at another position). `checkpoint` (the latest head kept outside the database) and
    `expect_head` = (seq, hash) recorded by hand also expose a cut tail or a wiped log.
    """
    t0 = time.perf_counter()
    stmt = select(AuditRecord.__table__).order_by(AuditRecord.__table__.c.seq).execution_options(yield_per=batch)
    first = prev = None
    failure: tuple[Any, _Copy] | None = None  # (previous row, offending row), diagnosed after the walk
    anchor_failure: tuple[int, str] | None = None
    anchors: dict[int, str] = {}  # purged_through_seq -> hash of that record, from authentic anchors
    wanted = {h[0] for h in (expect_head, (checkpoint.seq, checkpoint.hash) if checkpoint else None) if h}
    found: dict[int, str] = {}  # the stored hash at the expected heads' seqs
    relinked: dict[int, str] = {}  # old head seq -> its unkeyed hash, from authentic audit.relink records
    checked = 0
    for part in session.execute(stmt).partitions():
        for row in part:
            checked += 1
            intact = _self_ok(key, row)
            if first is None:
                first = _Copy(row)
                if not intact:
                    failure = (None, first)
            elif failure is None and (row.seq != prev.seq + 1 or row.prev_hash != prev.hash or not intact):
                failure = (prev, _Copy(row))
            if intact and row.kind == "anchor":  # keep walking after a failure: anchors decide the start
                d = row.details or {}
                why = _anchor_problem(row)
                if why is not None:
                    anchor_failure = anchor_failure or (row.seq, why)
                elif isinstance(d.get("purged_through_seq"), int) and isinstance(d.get("purged_through_hash"), str):
                    anchors[d["purged_through_seq"]] = d["purged_through_hash"]
            if intact and row.action == "audit.relink" and row.kind == "admin":
                d = row.details or {}
                if isinstance(d.get("old_head_seq"), int) and isinstance(d.get("old_head_hash"), str):
                    relinked[d["old_head_seq"]] = d["old_head_hash"]
            if row.seq in wanted:
                found[row.seq] = row.hash
            prev = row
    last_seq = prev.seq if prev is not None else None
    bad_seq, problem = None, None
    if first is not None:
        bad_seq, problem = _check_start(first, anchors)
    if bad_seq is None and failure is not None:
        bad_seq, problem = _diagnose(session, key, *failure)
    if anchor_failure is not None and (bad_seq is None or anchor_failure[0] < bad_seq):
        bad_seq, problem = anchor_failure
    for head, what in ((checkpoint and (checkpoint.seq, checkpoint.hash), "the head checkpoint"),
                       (expect_head, "the expected head")):
        if bad_seq is None and head:
            if checkpoint is not None and what == "the head checkpoint":
                what = f"the head checkpoint of {checkpoint.at} ({checkpoint.source})"
            bad_seq, problem = _check_head(head, found.get(head[0]), first, last_seq, what, relinked)
    seconds = time.perf_counter() - t0
    first_seq = first.seq if first is not None else None
    if bad_seq is None:
        last_good = last_seq
    else:
        last_good = bad_seq - 1 if first_seq is not None and bad_seq - 1 >= first_seq else None
    return VerifyReport(
        ok=bad_seq is None, checked=checked, first_bad_seq=bad_seq, problem=problem,
        last_seq=last_seq, last_hash=prev.hash if prev is not None else None,
        seconds=round(seconds, 4), first_seq=first_seq,
        records_per_s=round(checked / seconds, 1) if seconds > 0 else 0.0,
        last_good_seq=last_good, checkpoint_seq=checkpoint.seq if checkpoint else None,
        checkpoint_source=checkpoint.source if checkpoint else None,
    )


def verify_checked(session: Session, vault: Vault, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
    """:func:`verify` under the vault's chain key against the latest checkpoint of this database."""
    key = chain_key(vault.ring)
    try:
        checkpoint = latest_checkpoint(session, vault)
    except TamperedCheckpoint as exc:
        rep = verify(session, key, expect_head=expect_head)
        rep.ok, rep.problem = False, f"checkpoint: {exc}" + (f" The chain itself: {rep.problem}" if rep.problem else "")
        return rep
    return verify(session, key, expect_head=expect_head, checkpoint=checkpoint)


def _check_head(expect: tuple[int, str], found: str | None, first: _Copy | None, last_seq: int | None,
                what: str, relinked: dict[int, str] | None = None) -> tuple[int | None, str | None]:
    seq, want = expect
    if found is not None and found != want and relinked:
        # A head recorded before migration 0006 re-linked the log names the old, unkeyed hash: the
        # relink event vouches for the old head itself; earlier old hashes were not kept.
        through = max(relinked)
        if relinked.get(seq) == want or seq < through:
            return None, None
    if found is None:
        if first is None:
            return 1, f"missing: the log is empty, but {what} records seq {seq} (the log was wiped)"
        if seq < first.seq:
            return None, None  # purged since it was recorded (the start check vouches for the anchor)
        assert last_seq is not None
        return last_seq + 1, (f"missing: {_span(last_seq + 1, seq)} cut from the end of the log ({what} "
                              f"records seq {seq})")
    if found != want:
        return seq, f"altered: record {seq} differs from {what} (the log was rewritten)"
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
        return gone_from, (f"missing: {_span(gone_from, first.seq - 1)} not in the log and no authentic purge "
                           "anchor records the removal")
    if first.prev_hash != anchored:
        return first.seq, (f"missing: seq {first.seq} does not link to the hash the purge anchor recorded for "
                           f"seq {first.seq - 1}")
    return None, None


def _diagnose(session: Session, key: bytes, prev: Any, row: _Copy) -> tuple[int, str]:
    intact = _self_ok(key, row)
    if not intact:
        original = _original_seq(session, key, row)
        if original is not None and original != row.seq:
            return min(row.seq, original), (f"reordered: the record stored as seq {row.seq} was written as "
                                            f"seq {original}")
    if prev is not None and row.seq != prev.seq + 1:
        return prev.seq + 1, (f"missing: {_span(prev.seq + 1, row.seq - 1)} removed (seq jumps from {prev.seq} "
                              f"to {row.seq})")
    if not intact:
        if row.hash == chain_hash(row.prev_hash, row):
            return row.seq, ("altered: it carries an unkeyed SHA-256 link instead of the keyed one (written or "
                             "rewritten by someone without the chain key)")
        return row.seq, "altered: its fields no longer match its hash"
    # Intact itself but linked to something other than its predecessor: the predecessor was changed
    # and its hash recomputed, since this record still names the original hash.
    assert prev is not None
    return prev.seq, ("altered: its hash was recomputed after a change (the next record links to a "
                      "different hash)")


def _original_seq(session: Session, key: bytes, row: _Copy, window: int = 1000) -> int | None:
    """The seq at which a record's content would link correctly, if only its position changed."""
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
        if link_hash(key, row.prev_hash, _Copy(row, seq=s)) == row.hash:
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
    report = verify_checked(session, vault)
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


# --- re-linking a log written before the keyed chain -------------------------------------------
RELINK_ACTOR = Actor("kb migrate", "admin", "cli")


def relink(session: Session, key: bytes, actor: Actor = RELINK_ACTOR) -> int:
    """Re-link an unkeyed (pre-0005) chain under `key`, in the caller's transaction; returns how many
    records were re-linked (0 when the chain is keyed already).

    The old chain must verify first, under its own rules: contiguous seqs, each record linking to its
    predecessor, a start that genesis or an intact anchor accounts for; unkeyed links may only come
    before the first keyed one. Then every link is recomputed (the guards are lifted for this, so the
    connection must be the table owner's) and an ``audit.relink`` event records the old head.
    """
    _lock_chain(session)
    rows = session.execute(select(AuditRecord.__table__).order_by(AuditRecord.__table__.c.seq)).all()
    if not rows:
        return 0
    prev = None
    keyed_seen = False
    legacy = 0
    anchors: dict[int, str] = {}
    for row in rows:
        keyed, old = _self_ok(key, row), row.hash == chain_hash(row.prev_hash, row)
        where = f"seq {row.seq}"
        if prev is not None and (row.seq != prev.seq + 1 or row.prev_hash != prev.hash):
            raise KbError(f"The existing audit log does not verify at {where} (a gap or a broken link); refusing "
                          "to re-link it under the key. Investigate before migrating (compare with a backup).")
        if keyed:
            keyed_seen = True
        elif old and not keyed_seen:
            legacy += 1
        else:
            raise KbError(f"The existing audit log does not verify at {where} (its hash matches neither the old "
                          "nor the keyed chain); refusing to re-link it. Investigate before migrating.")
        if row.kind == "anchor":
            d = row.details or {}
            if isinstance(d.get("purged_through_seq"), int) and isinstance(d.get("purged_through_hash"), str):
                anchors[d["purged_through_seq"]] = d["purged_through_hash"]
        prev = row
    bad, why = _check_start(_Copy(rows[0]), anchors)
    if bad is not None:
        raise KbError(f"The existing audit log does not verify at seq {bad} ({why}); refusing to re-link it.")
    if legacy == 0:
        return 0
    old_head = (rows[-1].seq, rows[-1].hash)
    c = AuditRecord.__table__.c
    with _guards_lifted(session):
        link = rows[0].prev_hash  # genesis, or the hash a purge anchor recorded: both stay as they are
        for row in rows:
            new_hash = link_hash(key, link, _Copy(row, prev_hash=link))
            session.execute(update(AuditRecord.__table__).where(c.id == row.id)
                            .values(prev_hash=link, hash=new_hash))
            link = new_hash
    _append(session, None, kind="admin", action="audit.relink", actor=actor, outcome="ok",
            target=f"seq {rows[0].seq}..{old_head[0]}", sealed=None, key=key,
            details={"relinked": len(rows), "unkeyed": legacy, "old_head_seq": old_head[0],
                     "old_head_hash": old_head[1]})
    return len(rows)


@contextlib.contextmanager
def _guards_lifted(session: Session):
    """The append-only triggers off for this transaction only (the owner's right; the app role has none)."""
    if _dialect(session) == "postgresql":
        session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard_rows"))
        yield
        session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard_rows"))
        return
    guards = session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                  "AND tbl_name = 'audit_log' AND name = 'audit_log_no_update'")).all()
    for g in guards:
        session.execute(text(f'DROP TRIGGER "{g.name}"'))
    yield
    for g in guards:
        session.execute(text(g.sql))
