"""`kb audit` as an operator meets it: real subprocesses, exit codes, files, no tracebacks."""

from __future__ import annotations

import csv
import json
import stat
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from app.cli.audit_cmds import parse_time
from app.db import make_engine
from app.errors import KbError
from tests.app.test_audit import attacker
from tests.app.test_cli import kb


@pytest.fixture
def env(tmp_path, db_url):
    return {"KB_DATA_DIR": str(tmp_path / "data"), "KB_DATABASE__URL": db_url}


def test_audit_commands_end_to_end(env, tmp_path, db_url):
    assert kb(["init", "--admin-password-stdin"], env, stdin="a-long-password\n").returncode == 0
    assert kb(["users", "add", "bob", "--role", "staff", "--password-stdin"], env, "bob-password-1\n").returncode == 0

    ok = kb(["audit", "verify", "--json"], env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["checked"] == 2 and report["last_seq"] == 2
    head = f"{report['last_seq']}:{report['last_hash']}"

    listed = json.loads(kb(["audit", "list", "--json", "--user", "os:" + _whoami()], env).stdout)
    assert [r["target"] for r in listed] == ["bob", "admin"]  # newest first; the CLI names the OS account
    assert json.loads(kb(["audit", "list", "--json", "--user", "nobody"], env).stdout) == []
    table = kb(["audit", "list", "--since", "1h"], env)
    assert table.returncode == 0 and "user.create" in table.stdout and "bob" in table.stdout

    out = tmp_path / "audit.csv"
    exported = kb(["audit", "export", "--format", "csv", "-o", str(out)], env)
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # decrypted questions: owner only
    assert [r["target"] for r in csv.DictReader(out.open())] == ["admin", "bob"]
    shown = json.loads(kb(["audit", "show", "3", "--json"], env).stdout)
    assert shown["action"] == "audit.export" and shown["details"]["records"] == 2  # the export is logged

    refused = kb(["audit", "purge", "--before", datetime.now(UTC).date().isoformat(), "--yes"], env)
    assert refused.returncode != 0 and "retention period" in refused.stderr and "Traceback" not in refused.stderr
    purged = kb(["audit", "purge", "--before", "0m", "--yes", "--json"], {**env, "KB_AUDIT__RETENTION_DAYS": "0"})
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["purged"] == 3
    after = json.loads(kb(["audit", "verify", "--json"], env).stdout)
    assert after["ok"] and after["first_seq"] == 4 and after["checked"] == 1
    # The head recorded before the purge was purged itself: nothing left to compare, still intact.
    assert kb(["audit", "verify", "--expect-head", head], env).returncode == 0

    assert kb(["users", "disable", "bob"], env).returncode == 0  # seq 5
    engine = make_engine(db_url)
    with attacker(SimpleNamespace(engine=engine)) as conn:
        conn.execute(text("UPDATE audit_log SET target = 'alice' WHERE seq = 5"))
    engine.dispose()
    broken = kb(["audit", "verify"], env)
    assert broken.returncode == 1 and "BROKEN at seq 5" in broken.stderr and "altered" in broken.stderr
    assert "Traceback" not in broken.stderr
    as_json = kb(["audit", "verify", "--json"], env)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["first_bad_seq"] == 5

    bad_head = kb(["audit", "verify", "--expect-head", "five"], env)
    assert bad_head.returncode != 0 and "SEQ:HASH" in bad_head.stderr
    missing = kb(["audit", "show", "99"], env)
    assert missing.returncode != 0 and "No audit record" in missing.stderr and "Traceback" not in missing.stderr


def _whoami() -> str:
    import getpass

    return getpass.getuser()


def test_parse_time_accepts_dates_times_and_ages():
    assert parse_time("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_time("2026-01-31", end_of_day=True) == datetime(2026, 2, 1, tzinfo=UTC)
    assert parse_time("2026-01-31T08:00") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert parse_time("2026-01-31T08:00+08:00") == datetime(2026, 1, 31, 0, tzinfo=UTC)
    t0 = datetime.now(UTC)
    got = parse_time("7d")
    assert t0 - timedelta(days=7) <= got <= datetime.now(UTC) - timedelta(days=7)
    assert parse_time(" 12h") < parse_time("30m") < datetime.now(UTC)
    assert parse_time(None) is None
    with pytest.raises(KbError, match="Cannot read the time"):
        parse_time("last tuesday")
