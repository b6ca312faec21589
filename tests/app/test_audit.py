"""The audit log on real SQLite and PostgreSQL: every kind of tampering is caught, the database refuses
changes, purge keeps the chain verifiable, and readers see only what their role allows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app import audit, migrate
from app.audit import Actor
from app.errors import KbError, NotFound, PermissionDenied
from app.keys import KeyRing
from app.models import AuditRecord
from app.services import auditing
from app.services.caller import Caller
from app.services.container import Container
from tests.conftest import make_settings

ALICE = Actor("alice", "staff", "ui")
BOB = Actor("bob", "staff", "api")
ADMIN = Actor("admin", "admin", "cli")
AUDITOR = Caller("carol", "auditor", "ui")


def staff(name: str) -> Caller:
    return Caller(name, "staff", "ui")


def fill(container, n: int = 9) -> None:
    """A chain that mixes questions (sealed) and admin events, like a real log."""
    with container.sessions.begin() as s:
        for i in range(n):
            who = ALICE if i % 3 else BOB
            if i % 4 == 3:
                audit.append(s, container.vault, kind="admin", action="grant.add", actor=ADMIN, target=f"col{i}",
                             details={"user": who.name, "write": False})
            else:
                audit.append(s, container.vault, kind="query", action="ask", actor=who,
                             outcome="refused" if i == 5 else "ok",
                             details={"retrieved": [{"chunk_id": 10 + i, "score": 0.5 + i / 100}], "tokens": 7 * i},
                             sealed={"question": f"What is policy {i}?", "answer": f"Policy {i} says yes [1].",
                                     "refusal_reason": "no passages" if i == 5 else None})


def dialect(container) -> str:
    return container.engine.dialect.name


@contextmanager
def attacker(container) -> Iterator:
    """A connection that has switched the guards off, as the table owner or a superuser could (a kb running
    as the app role carries the superuser's engine as `dba_engine`: the app role itself cannot)."""
    with getattr(container, "dba_engine", container.engine).begin() as conn:
        if dialect(container) == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            yield conn
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
            return
        guards = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                   "AND tbl_name = 'audit_log'")).all()
        assert {g.name for g in guards} == {"audit_log_no_update", "audit_log_no_delete"}
        for g in guards:
            conn.execute(text(f"DROP TRIGGER {g.name}"))
        yield conn
        for g in guards:
            conn.execute(text(g.sql))


def verify(container, **kw) -> audit.VerifyReport:
    """What `kb audit verify` checks: the keyed chain and the latest head checkpoint."""
    with container.sessions() as s:
        return audit.verify_checked(s, container.vault, **kw)


def raw(container, seq: int) -> dict:
    with container.engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = :s"), {"s": seq}).mappings().one())


def _changed(field: str, value):
    """A different value of the same type for one column."""
    if field == "created_at":
        if isinstance(value, str):  # SQLite hands back its stored text
            return (datetime.fromisoformat(value) + timedelta(seconds=1)).isoformat(sep=" ")
        return value + timedelta(seconds=1)
    if field == "details":
        d = json.loads(value) if isinstance(value, str) else dict(value)
        d["tampered"] = True
        return json.dumps(d)
    if field == "payload_sealed":
        return None if value is None else bytes([value[0] ^ 1]) + bytes(value[1:])
    if field in ("prev_hash", "hash"):
        return ("1" if value[0] != "1" else "2") + value[1:]
    if field == "seq":
        return value + 1_000_000
    if field == "kind":
        return "anchor" if value != "anchor" else "admin"
    if not value:
        return "x"
    return value[:-1] + ("x" if value[-1] != "x" else "y")  # same length: fits every column


def test_altering_any_field_of_any_record_is_detected(container):
    fill(container)
    total = verify(container).last_seq
    assert verify(container).ok and total == 10  # init's user.create + 9
    for seq in (1, 5, 7, total):
        before = raw(container, seq)
        for field in audit.CHAIN_FIELDS:
            if field == "dek_id" and before["dek_id"] is None:
                continue
            if field == "payload_sealed" and before["payload_sealed"] is None:
                continue
            with attacker(container) as conn:
                conn.execute(text(f"UPDATE audit_log SET {field} = :v WHERE seq = :s"),
                             {"v": _changed(field, before[field]), "s": seq})
            report = verify(container)
            assert not report.ok, f"altering {field} of seq {seq} went unnoticed"
            assert report.first_bad_seq == seq, (field, seq, report)
            expected = ("missing", "reordered") if field == "seq" else ("altered",)
            assert report.problem.startswith(expected), (field, report.problem)
            where = seq + 1_000_000 if field == "seq" else seq
            with attacker(container) as conn:  # put the original value back: the chain heals
                conn.execute(text(f"UPDATE audit_log SET {field} = :v WHERE seq = :s"),
                             {"v": json.dumps(before[field]) if field == "details" and isinstance(before[field], dict)
                                   else before[field], "s": where})
            assert verify(container).ok, (field, seq)


@pytest.mark.parametrize("with_key", [False, True])
def test_recomputing_the_hash_of_an_altered_record_is_still_detected(container, with_key):
    """Without the key the recomputed link is no HMAC; even with it, the next record still links to the old one."""
    fill(container)
    row = raw(container, 4)
    with container.sessions() as s:
        rec = s.get(AuditRecord, row["id"])
        s.expunge(rec)
    rec.actor = "mallory"
    key = audit.chain_key(container.vault.ring)
    forged = audit.link_hash(key, rec.prev_hash, rec) if with_key else audit.chain_hash(rec.prev_hash, rec)
    with attacker(container) as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 4"), {"h": forged})
    report = verify(container)
    assert not report.ok and report.first_bad_seq == 4 and report.last_good_seq == 3
    assert ("recomputed" if with_key else "unkeyed") in report.problem, report.problem


@pytest.mark.parametrize("seq", [1, 6])
def test_deleting_a_record_is_detected(container, seq):
    fill(container)
    with attacker(container) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq})
    report = verify(container)
    assert not report.ok and report.first_bad_seq == seq and report.problem.startswith("missing")


def test_cutting_the_tail_is_detected_against_a_recorded_head(container):
    fill(container)
    head = verify(container)
    assert verify(container, expect_head=(head.last_seq, head.last_hash)).ok
    with attacker(container) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= :s"), {"s": head.last_seq - 1})
    with container.sessions() as s:  # a chain alone cannot see its own end cut off ...
        assert audit.verify(s, audit.chain_key(container.vault.ring)).ok
    # ... the head checkpoint outside the database does, and so does a head recorded by hand
    for report in (verify(container), verify(container, expect_head=(head.last_seq, head.last_hash))):
        assert not report.ok and report.first_bad_seq == head.last_seq - 1 and report.problem.startswith("missing")
        assert report.last_good_seq == head.last_seq - 2


@pytest.mark.parametrize(("a", "b"), [(4, 5), (3, 8)])
def test_swapping_two_records_is_detected(container, a, b):
    fill(container)
    with attacker(container) as conn:
        for old, new in ((a, -1), (b, a), (-1, b)):
            conn.execute(text("UPDATE audit_log SET seq = :n WHERE seq = :o"), {"n": new, "o": old})
    report = verify(container)
    assert not report.ok and report.first_bad_seq == a
    assert report.problem.startswith("reordered") and f"seq {b}" in report.problem, report.problem


def test_the_database_refuses_update_and_delete(container):
    fill(container, 3)
    for sql in ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 2",
                "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as conn:
            conn.execute(text(sql))
    if dialect(container) == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
        # Setting the purge flag by hand is not enough: no anchor covers the rows.
        with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as conn:
            conn.execute(text("SET LOCAL kb.audit_purge = 'on'"))
            conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert verify(container).ok and verify(container).checked == 4


def test_postgres_app_role_cannot_update_or_delete(container):
    """The trigger binds a role with every privilege; the GRANT hardening takes the privileges away too."""
    if dialect(container) != "postgresql":
        pytest.skip("PostgreSQL roles")
    fill(container, 3)
    suffix = container.engine.url.database.removeprefix("kbt_")
    full, hardened = f"kbt_app_{suffix}", f"kbt_app_ro_{suffix}"
    with container.engine.begin() as conn:
        for role in (full, hardened):
            conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        conn.execute(text(f"GRANT ALL ON audit_log TO {full}"))
        conn.execute(text(f"GRANT SELECT, INSERT ON audit_log TO {hardened}"))
    try:
        for sql in ("UPDATE audit_log SET outcome = 'error' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 2",
                    "TRUNCATE audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL ROLE {full}"))
                conn.execute(text(sql))
            with pytest.raises(DBAPIError, match="permission denied"), container.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL ROLE {hardened}"))
                conn.execute(text(sql))
        with pytest.raises(DBAPIError, match="must be owner"), container.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {full}"))
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    finally:
        with container.engine.begin() as conn:
            for role in (full, hardened):
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))
    assert verify(container).ok


class _Clock(datetime):
    at: datetime = datetime.now(UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.at


@pytest.fixture
def bare(tmp_path, db_url) -> Iterator[Container]:
    """Keys and schema but no first admin: the log starts with whatever the test appends."""
    c = Container(make_settings(tmp_path / "data", db_url))
    c.settings.data_dir.mkdir(parents=True)
    KeyRing.create(c.key_file)
    migrate.upgrade(c.engine)
    yield c
    c.engine.dispose()


def test_purge_keeps_the_chain_verifiable(bare, monkeypatch):
    now = datetime.now(UTC)
    monkeypatch.setattr(audit, "datetime", _Clock)
    _Clock.at = now - timedelta(days=400)
    fill(bare, 5)  # seq 1..5, 400 days old
    _Clock.at = now - timedelta(days=200)
    fill(bare, 3)  # seq 6..8
    monkeypatch.setattr(audit, "datetime", datetime)
    fill(bare, 2)  # seq 9..10, today
    with bare.sessions() as s:
        keys_before = s.execute(text("SELECT count(*) FROM data_keys WHERE id LIKE 'audit-%'")).scalar()

    with pytest.raises(KbError, match="retention period"), bare.sessions.begin() as s:
        audit.purge(s, bare.vault, now - timedelta(days=100), ADMIN, 180)

    with bare.sessions.begin() as s:
        rep = audit.purge(s, bare.vault, now - timedelta(days=300), ADMIN, 180)
    assert (rep.purged, rep.first_purged_seq, rep.last_purged_seq, rep.anchor_seq) == (5, 1, 5, 11)
    assert rep.keys_dropped == 1  # that month's key: its questions are now unreadable anywhere, backups too
    with bare.sessions() as s:
        assert s.execute(text("SELECT count(*) FROM data_keys WHERE id LIKE 'audit-%'")).scalar() == keys_before - 1
    with pytest.raises(NotFound):
        auditing.get(bare, AUDITOR, 3)
    anchor = auditing.get(bare, AUDITOR, 11)
    assert anchor.kind == "anchor" and anchor.details["purged_through_seq"] == 5 and anchor.actor == "admin"
    assert auditing.get(bare, AUDITOR, 7).question == "What is policy 1?"
    report = verify(bare)
    assert report.ok and report.first_seq == 6 and report.checked == 6

    with bare.sessions.begin() as s:  # a second purge chains onto the first
        rep2 = audit.purge(s, bare.vault, now - timedelta(days=190), ADMIN, 180)
    assert (rep2.first_purged_seq, rep2.last_purged_seq, rep2.anchor_seq, rep2.keys_dropped) == (6, 8, 12, 1)
    report = verify(bare)
    assert report.ok and report.first_seq == 9 and report.last_seq == 12

    with bare.sessions.begin() as s:  # nothing left that is old enough: the request is still logged
        rep3 = audit.purge(s, bare.vault, now - timedelta(days=190), ADMIN, 180)
    assert rep3.purged == 0 and verify(bare).ok and verify(bare).last_seq == 13

    with attacker(bare) as conn:  # removing what no anchor covers is still caught
        conn.execute(text("DELETE FROM audit_log WHERE seq = 9"))
    report = verify(bare)
    assert not report.ok and report.first_bad_seq == 9 and report.problem.startswith("missing")


def test_purge_refuses_a_broken_chain(container):
    fill(container, 3)
    with attacker(container) as conn:
        conn.execute(text("UPDATE audit_log SET outcome = 'error' WHERE seq = 2"))
    with pytest.raises(KbError, match="does not verify"), container.sessions.begin() as s:
        audit.purge(s, container.vault, datetime.now(UTC), ADMIN, 0)
    assert verify(container).checked == 4  # nothing was deleted


def test_append_refuses_forged_anchors(container):
    with pytest.raises(ValueError, match="anchor"), container.sessions.begin() as s:
        audit.append(s, container.vault, kind="anchor", action="audit.purge", actor=ADMIN,
                     details={"purged_through_seq": 10**9})


def test_query_filters_and_roles(container):
    fill(container)
    c = container
    everything = auditing.query(c, AUDITOR)
    assert [r.seq for r in everything] == list(range(10, 0, -1))  # newest first
    assert auditing.query(c, Caller("root", "admin", "cli"), limit=3, offset=2)[0].seq == 8

    own = auditing.query(c, staff("alice"))
    assert own and {r.actor for r in own} == {"alice"}
    assert auditing.query(c, staff("alice"), actor="bob") == []  # no peeking at others
    assert auditing.query(c, staff("alice"), contains="policy 0") == []  # bob asked that one
    with pytest.raises(PermissionDenied):
        auditing.query(c, Caller("eve", "contractor", "ui"))
    bobs = auditing.query(c, AUDITOR, actor="bob", kind="query")
    with pytest.raises(PermissionDenied):
        auditing.get(c, staff("alice"), bobs[0].seq)
    assert auditing.get(c, staff("bob"), bobs[0].seq).actor == "bob"

    hit = auditing.query(c, AUDITOR, contains="POLICY 4")  # opened text, case-insensitive
    assert len(hit) == 1 and hit[0].question == "What is policy 4?" and hit[0].answer.startswith("Policy 4")
    assert [r.target for r in auditing.query(c, AUDITOR, contains="col7")] == ["col7"]
    refused = auditing.query(c, AUDITOR, contains="no passages")
    assert len(refused) == 1 and refused[0].outcome == "refused" and refused[0].reason == "no passages"
    assert refused[0].details["retrieved"][0]["chunk_id"] == 15
    assert len(auditing.query(c, AUDITOR, contains="policy", limit=2, offset=1)) == 2

    first, last = everything[-1].created_at, everything[0].created_at
    assert first.tzinfo is not None
    assert [r.seq for r in auditing.query(c, AUDITOR, since=last)] == [10]
    assert 1 not in [r.seq for r in auditing.query(c, AUDITOR, since=first + timedelta(microseconds=1))]
    assert [r.seq for r in auditing.query(c, AUDITOR, until=first + timedelta(microseconds=1))] == [1]
    with pytest.raises(NotFound):
        auditing.get(c, AUDITOR, 999)


def test_the_chain_services_check_roles(container):
    fill(container, 3)
    for who in (staff("alice"), Caller("eve", "contractor", "ui")):
        with pytest.raises(PermissionDenied):
            auditing.verify(container, who)
        with pytest.raises(PermissionDenied):
            auditing.purge(container, who, datetime.now(UTC) - timedelta(days=10_000))
    with pytest.raises(PermissionDenied):
        auditing.purge(container, AUDITOR, datetime.now(UTC) - timedelta(days=10_000))
    with pytest.raises(PermissionDenied):
        auditing.export(container, Caller("eve", "contractor", "ui"), "csv", io.StringIO())
    assert auditing.verify(container, AUDITOR).ok and auditing.last_check(container).ok
    assert verify(container).checked == 4  # refusals change nothing


def test_a_moved_payload_is_reported_not_opened(container):
    """The sealed question is bound to its seq: copying ciphertext onto another record cannot reveal it."""
    fill(container, 3)
    src = raw(container, 2)
    with attacker(container) as conn:
        conn.execute(text("UPDATE audit_log SET payload_sealed = :p, dek_id = :d WHERE seq = 3"),
                     {"p": src["payload_sealed"], "d": src["dek_id"]})
    view = auditing.get(container, AUDITOR, 3)
    assert view.question is None and view.payload_error


def test_export_csv_and_jsonl(container):
    fill(container, 6)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="query", action="ask", actor=ALICE,
                     sealed={"question": "=HYPERLINK(\"http://x\")", "answer": "no"})
    buf = io.StringIO()
    n = auditing.export(container, staff("alice"), "csv", buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert n == len(rows) == 5 and {r["actor"] for r in rows} == {"alice"}
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)  # oldest first
    assert rows[-1]["question"].startswith("'=")  # never a live spreadsheet formula
    assert json.loads(rows[0]["details"])["retrieved"][0]["chunk_id"] == 11
    logged = auditing.query(container, AUDITOR, limit=1)[0]  # the export is itself logged, as alice
    assert (logged.action, logged.actor, logged.target, logged.details) == (
        "audit.export", "alice", "csv", {"records": 5, "contains_filter": False})

    buf = io.StringIO()
    n = auditing.export(container, AUDITOR, "jsonl", buf, kind="query", contains="policy")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert n == len(lines) == 5 and all("policy" in r["question"] for r in lines)
    assert lines[0]["hash"] == raw(container, lines[0]["seq"])["hash"]
    assert list(lines[0]) == auditing.EXPORT_COLUMNS
    assert auditing.query(container, AUDITOR, limit=1)[0].details == {"records": 5, "kind": "query",
                                                                       "contains_filter": True}
    with pytest.raises(KbError, match="format"):
        auditing.export(container, AUDITOR, "xml", io.StringIO())


# --- the hashed fields are declared once -------------------------------------------------------
NOT_HASHED = {"id", "prev_hash", "hash"}  # prev_hash prefixes the hashed bytes; hash is the result


def coverage(columns, hashed) -> tuple[set[str], set[str]]:
    """(columns the hash does not cover, hashed fields that are no column)."""
    return set(columns) - NOT_HASHED - set(hashed), set(hashed) - set(columns)


def test_hashed_fields_are_every_column_but_id_and_the_links():
    """A column added to audit_log but not to HASHED_FIELDS could be changed unnoticed; a field in
    HASHED_FIELDS that is no column breaks every append. Either way: decide, then update both."""
    columns = [c.name for c in AuditRecord.__table__.columns]
    assert coverage(columns, audit.HASHED_FIELDS) == (set(), set())
    assert len(set(audit.HASHED_FIELDS)) == len(audit.HASHED_FIELDS) == 12
    assert set(audit.CHAIN_FIELDS) == set(columns) - {"id"}  # what verify copies of each record


def test_the_coverage_check_sees_a_column_or_a_field_added_alone():
    columns = [c.name for c in AuditRecord.__table__.columns]
    assert coverage([*columns, "reviewed_by"], audit.HASHED_FIELDS) == ({"reviewed_by"}, set())
    assert coverage(columns, (*audit.HASHED_FIELDS, "reviewed_by")) == (set(), {"reviewed_by"})


def _golden_records():
    from types import SimpleNamespace as NS

    a = NS(seq=7, kind="query", action="ask", created_at=datetime(2026, 1, 2, 11, 4, 5, 678901,
                                                                  tzinfo=timezone(timedelta(hours=8))),
           actor="alice", actor_role="staff", client="ui", target=None, outcome="ok",
           details={"retrieved": [{"chunk_id": 11, "score": 0.5}], "note": "差旅"}, dek_id="audit-2026-01-x",
           payload_sealed=b"\x00\x01\xfe")
    b = NS(seq=1, kind="admin", action="user.create", created_at=datetime(2025, 12, 31, 23, 59, 59), actor=None,
           actor_role=None, client="cli", target="bob", outcome="ok", details={}, dek_id=None, payload_sealed=None)
    return a, b


def test_the_hash_format_is_unchanged():
    """Hashes as the first release computed them: existing chains must keep verifying."""
    a, b = _golden_records()
    assert audit.chain_hash("ab" * 32, a) == "989b31427fa4d9fa77165854593d3fbe7392da8bc6e7e5d6b154150448c563c1"
    assert audit.chain_hash(audit.GENESIS, b) == "86ec5c2557da567acc5fddb6df73a4305787729a139abb049af434e0fedb7cd6"
    assert set(json.loads(audit.canonical_bytes(a))) == set(audit.HASHED_FIELDS)
