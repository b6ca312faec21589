"""Tamper-evident audit log: every question and admin action appends one hash-chained record.

``hash = SHA-256(prev_hash || canonical record bytes)``. Sensitive text (questions, answers,
reasons) is sealed; the hash covers the ciphertext, so the chain verifies without keys.
Appends are serialized (an advisory lock on PostgreSQL, the write lock on SQLite) and ``seq`` is
unique, so concurrent writers can never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.keys import Vault
from app.models import AuditRecord

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x6B62_6175  # "kbau"


def canonical_bytes(r: AuditRecord) -> bytes:
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
    body = {
        "seq": r.seq, "kind": r.kind, "action": r.action,
        "created_at": created.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": r.actor, "actor_role": r.actor_role, "client": r.client, "target": r.target,
        "outcome": r.outcome, "details": r.details, "dek_id": r.dek_id,
        "payload_sealed": r.payload_sealed.hex() if r.payload_sealed else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def chain_hash(prev_hash: str, r: AuditRecord) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(r)).hexdigest()


@dataclass
class Actor:
    name: str | None
    role: str | None
    client: str  # cli | ui | api | worker


def _lock_chain(session: Session) -> None:
    if session.bind is not None and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    else:  # SQLite: take the database write lock now, before reading the chain head
        session.execute(text("UPDATE audit_log SET seq = seq WHERE 0"))


def append(session: Session, vault: Vault, *, kind: str, action: str, actor: Actor, outcome: str = "ok",
           target: str | None = None, details: dict[str, Any] | None = None,
           sealed: dict[str, Any] | None = None) -> AuditRecord:
    """Append one record in the caller's transaction. `sealed` holds the fields only auditors may read."""
    _lock_chain(session)
    last = session.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    dek_id = payload = None
    if sealed:
        dek_id, dek = audit_key(session, vault)
        payload = vault.seal(dek, json.dumps(sealed, ensure_ascii=False), "audit_log", seq, dek_id)
    rec = AuditRecord(
        seq=seq, kind=kind, action=action, created_at=datetime.now(UTC), actor=actor.name,
        actor_role=actor.role, client=actor.client, target=target, outcome=outcome,
        details=details or {}, dek_id=dek_id, payload_sealed=payload, prev_hash=prev,
    )
    rec.hash = chain_hash(prev, rec)
    session.add(rec)
    session.flush()
    return rec


def audit_key(session: Session, vault: Vault) -> tuple[str, bytes]:
    """The data key for audit payloads: one per month, so a purge can drop old keys with old records."""
    from app.models import DataKey

    month = datetime.now(UTC).strftime("%Y-%m")
    marker = f"audit-{month}"
    row = session.scalar(select(AuditRecord.dek_id).where(AuditRecord.dek_id.like(f"{marker}%")).limit(1))
    if row and session.get(DataKey, row) is not None:
        return row, vault.data_key(session, row)
    return vault.new_data_key_named(session, f"{marker}-")


def open_payload(session: Session, vault: Vault, rec: AuditRecord) -> dict[str, Any]:
    if rec.payload_sealed is None or rec.dek_id is None:
        return {}
    dek = vault.data_key(session, rec.dek_id)
    return json.loads(vault.open_text(dek, rec.payload_sealed, "audit_log", rec.seq, rec.dek_id))
