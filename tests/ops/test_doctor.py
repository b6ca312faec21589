"""kb doctor: all ok on a healthy kb, and each broken part found, named and given a fix, exit 1."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from app.services import doctor
from app.services.caller import operator
from app.services.container import Container
from tests.ops.conftest import settings_for

pytestmark = pytest.mark.slow


def _status(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_doctor_finds_what_needs_fixing(populated, smollm2):
    s = populated.settings
    c = Container(settings_for(s.data_dir, s.database_url, llm={"model_path": smollm2.path}))
    os.chmod(s.data_dir, 0o700)
    report = doctor.diagnose(c, operator(), dev=False)
    assert report.ok and set(_status(report).values()) == {"ok"}, report.as_dict()
    assert {"database", "master key", "data dir", "disk space", "audit chain", "blobs", "index", "embedder",
            "models"} == set(_status(report))

    # the master key readable by others: fail, and what needs the key is skipped
    os.chmod(c.key_file, 0o644)
    r = doctor.diagnose(c, operator(), verify_models=False, dev=False)
    fail = next(x for x in r.checks if x.name == "master key")
    assert not r.ok and fail.status == "fail" and "chmod 600" in fail.fix
    assert _status(r)["audit chain"] == "skip" and _status(r)["index"] == "skip"
    os.chmod(c.key_file, 0o600)

    # a missing original, a deleted index snapshot, an altered audit record
    blob = next(p for p in s.blobs_dir.rglob("*") if p.is_file())
    blob.unlink()
    gen = next(p for p in s.index_dir.iterdir() if p.name.startswith("g-"))
    for f in gen.iterdir():
        f.unlink()
    gen.rmdir()
    if c.engine.dialect.name == "sqlite":
        with c.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    r = doctor.diagnose(c, operator(), verify_models=False, dev=False)
    st = _status(r)
    assert st["blobs"] == "fail" and st["index"] == "fail"
    if c.engine.dialect.name == "sqlite":
        assert st["audit chain"] == "fail" and "seq 2" in next(x.detail for x in r.checks if x.name == "audit chain")
    assert all(x.fix for x in r.checks if x.status == "fail")

    # the CLI: --json for monitoring, exit 1
    env = {"KB_DATA_DIR": str(s.data_dir), "KB_DATABASE_URL": s.database_url, "KB_LLM__MODEL_PATH": str(smollm2.path)}
    out = CliRunner().invoke(__import__("app.cli", fromlist=["cli"]).cli, ["doctor", "--json", "--quick"], env=env)
    assert out.exit_code == 1
    data = json.loads(out.output)
    assert data["ok"] is False and {x["name"] for x in data["checks"] if x["status"] == "fail"} >= {"blobs", "index"}
    c.engine.dispose()


def test_doctor_reports_an_unreachable_database_without_crashing(tmp_path):
    c = Container(settings_for(tmp_path / "data", "postgresql+psycopg://kb@127.0.0.1:1/kb"))
    r = doctor.diagnose(c, operator(), verify_models=False, dev=False)
    st = _status(r)
    assert st["database"] == "fail" and "Cannot reach the database" in r.checks[1].detail
    assert st["master key"] == st["audit chain"] == st["index"] == "skip"
    assert st["data dir"] == "fail" and not r.ok  # no data dir either: `kb init`


def test_doctor_checks_chromium_in_a_source_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "CHROMIUM", tmp_path / "no-chromium")
    c = Container(settings_for(tmp_path / "data", f"sqlite:///{tmp_path / 'kb.sqlite3'}"))
    r = doctor.diagnose(c, operator(), verify_models=False, dev=True)
    chromium = next(x for x in r.checks if x.name == "chromium")
    assert chromium.status == "warn" and "apt-get install chromium" in chromium.fix
