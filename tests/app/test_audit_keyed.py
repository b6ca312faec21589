"""Issue 19's attacks on the audit log, on real SQLite and PostgreSQL: someone with the database but not
the master key forges a purge anchor and deletes, rewrites the tail with recomputed hashes, cuts the
tail or wipes the log. `kb audit verify` reports each as broken, with the last good seq, by itself
(against the head checkpoint kept outside the database). Plus: the checkpoint files, the anchor's
retention rule, and migration 0006 re-linking an old unkeyed log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from app import audit, migrate
from app.errors import KbError
from app.keys import KeyRing
from app.models import AuditRecord
from app.services.container import Container
from tests.app.pg_roles import app_role_kb
from tests.app.test_audit import ADMIN, attacker, dialect, fill, raw, verify
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["owner", "app-role"])
def container(request, tmp_path, db_url) -> Iterator[Container]:
    """kb initialised as usual ("owner": it owns the schema) and, on PostgreSQL, kb running as the app role
    `kb db setup-roles` made, with the superuser's engine as `dba_engine` for the attacker."""
    from app.services.setup import init

    c = Container(make_settings(tmp_path / "data", db_url))
    init(c, "admin", "admin-password-1")
    try:
        if request.param == "owner":
            yield c
        elif c.engine.dialect.name != "postgresql":
            pytest.skip("the app role is PostgreSQL's")
        else:
            with app_role_kb(c, tmp_path / "data") as (app_kb, _, _):
                yield app_kb
    finally:
        c.engine.dispose()


def as_app_role(container) -> bool:
    return hasattr(container, "dba_engine")


def records(container) -> list[dict]:
    with container.engine.connect() as conn:
        t = AuditRecord.__table__
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.seq)).mappings()]


def as_record(row: dict, **changes) -> AuditRecord:
    """A detached copy of a stored row (for computing what a forger would compute)."""
    return AuditRecord(**{c.name: changes.get(c.name, row[c.name]) for c in AuditRecord.__table__.columns})


def forged_anchor_row(container, through: int, link) -> dict:
    """The original attack: an anchor record built with app.audit's own canonical bytes and a link
    function, claiming the records up to `through` were purged."""
    rows = records(container)
    head, purged = rows[-1], rows[through - 1]
    now = datetime.now(UTC)
    rec = AuditRecord(seq=head["seq"] + 1, kind="anchor", action="audit.purge", created_at=now, actor="admin",
                      actor_role="admin", client="cli", target=f"seq 1..{through}", outcome="ok",
                      details={"before": (now - timedelta(days=400)).isoformat(), "first_purged_seq": 1,
                               "purged_through_seq": through, "purged_through_hash": purged["hash"],
                               "purged_count": through, "retention_days": 180},
                      dek_id=None, payload_sealed=None, prev_hash=head["hash"])
    rec.hash = link(head["hash"], rec)
    return {c.name: getattr(rec, c.name) for c in AuditRecord.__table__.columns if c.name != "id"}


def cli_verify(container) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "KB_DATA_DIR": str(container.settings.data_dir),
           "KB_DATABASE__URL": container.settings.database_url}
    return subprocess.run([sys.executable, "-m", "app", "audit", "verify"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("link", ["unkeyed", "wrong key"])
def test_forged_anchor_and_delete_is_reported(container, link):
    fill(container)  # seq 1..10, all inside the retention period
    wrong = audit.chain_key(KeyRing({1: b"\x07" * 32}, b"", None))
    fn = audit.chain_hash if link == "unkeyed" else (lambda prev, r: audit.link_hash(wrong, prev, r))
    row = forged_anchor_row(container, 8, fn)
    with container.engine.begin() as conn:  # INSERT is what the application may do
        conn.execute(insert(AuditRecord.__table__), [row])
    if as_app_role(container):  # the app role may not delete at all ...
        with pytest.raises(DBAPIError, match="permission denied"), container.engine.begin() as conn:
            conn.execute(text("SET LOCAL kb.audit_purge = 'on'"))
            conn.execute(text("DELETE FROM audit_log WHERE seq <= 8"))
    # ... the table owner (the app role of old) or a superuser may: flag set, the guard trusts the anchor
    with getattr(container, "dba_engine", container.engine).begin() as conn:
        if dialect(container) == "postgresql":
            conn.execute(text("SET LOCAL kb.audit_purge = 'on'"))
        conn.execute(text("DELETE FROM audit_log WHERE seq <= 8"))
    report = verify(container)
    assert not report.ok and report.first_bad_seq == 1 and report.last_good_seq is None
    assert report.problem.startswith("missing: records 1..8") and "authentic purge anchor" in report.problem
    out = cli_verify(container)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BROKEN at seq 1" in out.stderr and "last good record: none" in out.stderr


def test_rewritten_tail_with_recomputed_hashes_is_reported(container):
    fill(container)
    rows = records(container)
    prev = rows[5]["prev_hash"]
    with attacker(container) as conn:  # from seq 6 on: other actors, hashes recomputed as before issue 19
        for row in rows[5:]:
            rec = as_record(row, actor="mallory", prev_hash=prev)
            prev = audit.chain_hash(prev, rec)
            conn.execute(text("UPDATE audit_log SET actor = 'mallory', prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"p": rec.prev_hash, "h": prev, "s": row["seq"]})
    report = verify(container)
    assert not report.ok and report.first_bad_seq == 6 and report.last_good_seq == 5
    assert "unkeyed" in report.problem


def test_cut_tail_is_reported_against_the_checkpoint_by_itself(container):
    fill(container)
    last = verify(container).last_seq
    assert verify(container).checkpoint_seq == last  # every commit that appended moved the checkpoint
    with attacker(container) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > 7"))
    report = verify(container)
    assert not report.ok and (report.first_bad_seq, report.last_good_seq) == (8, 7)
    assert report.problem.startswith(f"missing: records 8..{last} were cut from the end of the log (the head "
                                     "checkpoint of ") and report.problem.endswith(f"records seq {last})")
    out = cli_verify(container)
    assert out.returncode == 1 and "BROKEN at seq 8" in out.stderr and "last good record: seq 7" in out.stderr


def test_wiped_log_is_reported(container):
    fill(container)
    with attacker(container) as conn:
        conn.execute(text("DELETE FROM audit_log"))
    report = verify(container)
    assert not report.ok and report.checked == 0 and report.first_bad_seq == 1 and report.last_good_seq is None
    assert "wiped" in report.problem
    from app.services import auditing
    from app.services.caller import Caller

    auditing.verify(container, Caller("carol", "auditor", "ui"))  # what the Query log page shows
    shown = auditing.last_check(container)
    assert not shown.ok and shown.first_bad_seq == 1 and shown.last_good_seq is None and "wiped" in shown.problem


def test_the_checkpoint_file_is_authenticated_and_never_moves_back(container):
    fill(container, 3)
    head = verify(container).last_seq
    with container.sessions() as s:
        cp = audit.latest_checkpoint(s, container.vault)
    assert cp is not None and cp.seq == head and Path(cp.source).parent == container.settings.audit_head_dir
    assert oct(Path(cp.source).stat().st_mode & 0o777) == "0o600"
    store = audit.checkpoint_store(container.vault)
    key = audit.chain_key(container.vault.ring)
    db_id = audit.database_id(container.engine.url)
    store.write(key, db_id, 2, raw(container, 2)["hash"])  # a slower process commits an older head later
    with container.sessions() as s:
        assert audit.latest_checkpoint(s, container.vault).seq == head
    # Someone with file access but not the key lowers the head to hide a cut: the MAC fails.
    body = json.loads(Path(cp.source).read_text())
    body.update(seq=2, hash=raw(container, 2)["hash"])
    Path(cp.source).write_text(json.dumps(body))
    report = verify(container)
    assert not report.ok and report.problem.startswith("checkpoint:") and "does not authenticate" in report.problem


def test_an_append_only_checkpoint_log_outlives_the_head_file(tmp_path, db_url):
    journal = tmp_path / "worm" / "kb-heads.log"
    journal.parent.mkdir()
    c = Container(make_settings(tmp_path / "data", db_url, audit={"checkpoint_log": str(journal)}))
    from app.services.setup import init

    init(c, "admin", "admin-password-1")
    fill(c, 4)
    lines = journal.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 5]  # one line per commit that appended (fill: one)
    for f in c.settings.audit_head_dir.glob("*.json"):
        f.unlink()  # the head file goes; the journal the operator keeps elsewhere does not
    with attacker(c) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    report = verify(c)
    assert not report.ok and report.first_bad_seq == 4 and report.checkpoint_source == str(journal)
    c.engine.dispose()


def test_an_anchor_inside_its_retention_period_does_not_count(container):
    """Defence in depth: even a keyed anchor (only kb's purge, which refuses this, can make one) that
    names a date inside its retention period is reported."""
    fill(container, 3)
    anchor_seq = verify(container).last_seq + 1
    now = datetime.now(UTC)
    with container.sessions.begin() as s:
        audit._append(s, container.vault, kind="anchor", action="audit.purge", actor=ADMIN, outcome="ok",
                      target="seq 1..2", sealed=None,
                      details={"before": now.isoformat(), "purged_through_seq": 2, "retention_days": 180,
                               "purged_through_hash": raw(container, 2)["hash"]})
    report = verify(container)
    assert not report.ok and report.first_bad_seq == anchor_seq and "retention period" in report.problem


def test_purge_still_works_and_refuses_inside_retention(container):
    fill(container, 3)
    with pytest.raises(KbError, match="retention period"), container.sessions.begin() as s:
        audit.purge(s, container.vault, datetime.now(UTC), ADMIN, 180)
    if as_app_role(container):  # purges run as the owner; the app role cannot delete
        with pytest.raises(DBAPIError, match="permission denied"), container.sessions.begin() as s:
            audit.purge(s, container.vault, datetime.now(UTC), ADMIN, 0)
        assert verify(container).ok
        return
    with container.sessions.begin() as s:
        rep = audit.purge(s, container.vault, datetime.now(UTC), ADMIN, 0)
    assert rep.purged == 4
    report = verify(container)
    assert report.ok and report.first_seq == 5 and report.checkpoint_seq == 5


# --- migration 0006: re-linking an unkeyed log ---------------------------------------------------
@pytest.fixture
def legacy(tmp_path, db_url):
    """A database at 0005 holding a log the old kb wrote (unkeyed SHA-256 links), with a purge in it."""
    c = Container(make_settings(tmp_path / "data", db_url))
    c.settings.data_dir.mkdir(parents=True)
    KeyRing.create(c.key_file)
    migrate.upgrade(c.engine, "0005")
    prev = audit.GENESIS
    rows = []
    for seq in range(1, 8):
        rec = AuditRecord(seq=seq, kind="admin", action="note", created_at=datetime.now(UTC), actor="t",
                          actor_role="admin", client="cli", target=None, outcome="ok", details={"i": seq},
                          dek_id=None, payload_sealed=None, prev_hash=prev)
        rec.hash = prev = audit.chain_hash(prev, rec)
        rows.append({col.name: getattr(rec, col.name) for col in AuditRecord.__table__.columns if col.name != "id"})
    with c.engine.begin() as conn:
        conn.execute(insert(AuditRecord.__table__), rows)
    yield c
    c.engine.dispose()


def test_migration_relinks_an_unkeyed_log_and_records_it(legacy):
    with pytest.raises(Exception, match="master key"):  # without the key only an empty log migrates
        migrate.upgrade(legacy.engine)
    assert migrate.current_revision(legacy.engine) == "0005"
    before = records(legacy)
    migrate.upgrade(legacy.engine, audit_key=audit.chain_key(legacy.vault.ring))
    report = verify(legacy)
    assert report.ok and report.checked == 8
    after = records(legacy)
    assert [(r["seq"], r["actor"], r["details"]) for r in after[:7]] == [(r["seq"], r["actor"], r["details"])
                                                                         for r in before]
    assert all(a["hash"] != b["hash"] for a, b in zip(after, before, strict=False))
    event = after[-1]
    details = event["details"]
    assert (event["action"], event["actor"]) == ("audit.relink", "kb migrate")
    assert details == {"relinked": 7, "unkeyed": 7, "old_head_seq": 7, "old_head_hash": before[-1]["hash"]}
    with pytest.raises(DBAPIError, match="append-only"), legacy.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'x' WHERE seq = 1"))  # the guards are back
    # A head recorded before the upgrade (e.g. in a backup's manifest) still checks out, a wrong one does not.
    assert verify(legacy, expect_head=(7, before[-1]["hash"])).ok
    assert not verify(legacy, expect_head=(7, "ab" * 32)).ok


def test_migration_refuses_to_bless_a_tampered_old_log(legacy):
    with attacker(legacy) as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    with pytest.raises(KbError, match="seq 3"):
        migrate.upgrade(legacy.engine, audit_key=audit.chain_key(legacy.vault.ring))
    assert migrate.current_revision(legacy.engine) == "0005"
    with legacy.engine.connect() as conn:
        assert conn.execute(select(AuditRecord.__table__.c.actor).where(AuditRecord.__table__.c.seq == 3)).scalar() \
            == "mallory"  # nothing was re-linked


def test_emptying_the_schema_on_purpose_starts_a_new_checkpoint(tmp_path, db_url):
    from app.services.setup import init, migrate_schema

    c = Container(make_settings(tmp_path / "data", db_url))
    init(c, "admin", "admin-password-1")
    fill(c, 3)
    assert verify(c).checkpoint_seq == 4
    migrate_schema(c, "base")  # `kb migrate --revision base`: the operator empties the database
    init(c, "admin", "admin-password-1")
    report = verify(c)
    assert report.ok and report.checked == 1 and report.checkpoint_seq == 1
    c.engine.dispose()
