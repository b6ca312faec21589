"""kb backup / kb restore: a populated kb comes back with the same documents, originals, search results
and an intact audit chain; a wrong passphrase, a damaged file, an altered manifest and a non-empty
target are refused with nothing written; an older schema is migrated; nothing in a backup is plaintext."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import audit, blobs, migrate
from app.errors import IntegrityError, KbError
from app.keys import KeyRing
from app.models import Document
from app.services import backup as svc
from app.services.caller import Caller, operator
from app.services.container import Container
from app.services.search import search
from tests.ops.conftest import MARKER, settings_for

pytestmark = pytest.mark.slow
PASS = "correct horse battery staple"
QUERIES = ["who reviews firewall rules", "subscription revenue in Asia", "paid leave days"]


def _documents(c: Container) -> list[tuple]:
    with c.sessions() as s:
        rows = s.scalars(select(Document).order_by(Document.id)).all()
        out = []
        for d in rows:
            dek = c.vault.data_key(s, d.dek_id)
            original = blobs.load(c.settings.blobs_dir, dek, d.id, d.blob_name) if d.blob_name else None
            out.append((d.id, d.source, d.status, d.n_chunks, d.file_hmac, original))
        return out


def _results(c: Container) -> list[list[tuple]]:
    return [[(p.chunk_id, p.document_id, p.source, p.text, round(p.score, 5)) for p in search(c, operator(), q, k=3)]
            for q in QUERIES]


def _chain(c: Container):
    with c.sessions() as s:
        return audit.verify_checked(s, c.vault)


def test_backup_and_restore_give_the_same_kb(populated, tmp_path, empty_db_url):
    before_docs, before_results = _documents(populated), _results(populated)
    assert len(before_docs) == 3 and all(d[2] == "indexed" for d in before_docs)
    dest = tmp_path / "backups" / "b1"
    result = svc.backup(populated, operator(), dest, PASS)
    assert (result.documents, result.blobs) == (3, 3) and result.chunks >= 3
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"keys.kbf", manifest["database"]["file"]}
    assert len([f for f in manifest["files"] if f["path"].startswith("blobs/")]) == 3
    head = _chain(populated)

    # nothing in the backup is plaintext: no document text, no key material
    key_hex = next(iter(populated.vault.ring.versions.values())).hex()
    for p in dest.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert MARKER.encode() not in data, p
            assert key_hex.encode() not in data and bytes.fromhex(key_hex) not in data, p
            assert p.stat().st_mode & 0o077 == 0, p

    target = Container(settings_for(tmp_path / "restored", empty_db_url))
    restored = svc.restore(target, operator(), dest, PASS)
    assert restored.audit_ok and restored.indexed_chunks == result.chunks
    assert restored.schema_to == migrate.head_revision(target.engine)
    assert _documents(target) == before_docs  # same rows, same original files
    assert _results(target) == before_results  # same search results, same scores
    # every record of the snapshot came back (the backup's own record follows it in the source)
    assert restored.audit_checked == manifest["audit_head"][0] == head.checked - 1
    assert _chain(target).ok
    assert target.key_file.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "restored").glob(".restore-*"))
    # the restored kb is a working kb: a new document can be added and found
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "vpn.txt").write_text("The VPN certificate is renewed every September by the IT desk.")
    from app.services import documents
    from ingest.worker import Worker

    list(documents.ingest_paths(target, operator(), [tmp_path / "new"], "policies"))
    Worker(target).run_once()
    assert search(target, operator(), "VPN certificate renewal", k=1)[0].source.endswith("vpn.txt")
    target.engine.dispose()


def _assert_untouched(data_dir: Path, db_url: str) -> None:
    assert not data_dir.exists() or not any(p.is_file() for p in data_dir.rglob("*")), list(data_dir.rglob("*"))
    if db_url.startswith("postgresql"):
        from sqlalchemy import create_engine, inspect

        eng = create_engine(db_url)
        try:
            assert inspect(eng).get_table_names() == []
        finally:
            eng.dispose()


def test_wrong_passphrase_damaged_file_altered_manifest_and_non_empty_target_are_refused(
        populated, tmp_path, empty_db_url):
    dest = tmp_path / "b"
    svc.backup(populated, operator(), dest, PASS)
    data_dir = tmp_path / "restored"

    def attempt(passphrase=PASS):
        return svc.restore(Container(settings_for(data_dir, empty_db_url)), operator(), dest, passphrase,
                           rebuild=False)

    with pytest.raises(KbError, match="Wrong passphrase"):
        attempt("not the passphrase at all")
    _assert_untouched(data_dir, empty_db_url)

    blob = next(p for p in (dest / "blobs").rglob("*") if p.is_file())
    good = blob.read_bytes()
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        attempt()
    _assert_untouched(data_dir, empty_db_url)
    blob.write_bytes(good)

    manifest_path = dest / "manifest.json"
    original = manifest_path.read_text()
    m = json.loads(original)
    m["counts"]["documents"] = 99
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="altered"):
        attempt()
    _assert_untouched(data_dir, empty_db_url)
    manifest_path.write_text(original)

    # a kb that already exists is never overwritten
    with pytest.raises(KbError, match="not empty"):
        svc.restore(populated, operator(), dest, PASS, rebuild=False)

    # an unfinished backup (no manifest) and a backup into an existing backup are refused
    with pytest.raises(KbError, match="already exists"):
        svc.backup(populated, operator(), dest, PASS)
    with pytest.raises(KbError, match="at least"):
        svc.backup(populated, operator(), tmp_path / "b2", "short")
    with pytest.raises(KbError, match="no manifest.json"):
        svc.restore(populated, operator(), tmp_path, PASS)

    # staff may not back up or restore
    staff = Caller("alice", "staff", "cli")
    with pytest.raises(KbError):
        svc.backup(populated, staff, tmp_path / "b3", PASS)

    # after all of that, the intact backup still restores
    assert attempt().audit_ok


def test_a_backup_of_an_older_schema_is_migrated_to_head(tmp_path):
    from sqlalchemy.orm import Session

    old = Container(settings_for(tmp_path / "old", f"sqlite:///{tmp_path / 'old' / 'kb.sqlite3'}"))
    (tmp_path / "old").mkdir()
    KeyRing.create(old.key_file)
    migrate.upgrade(old.engine, "0002")
    with Session(old.engine) as s, s.begin():
        for i in range(3):
            audit.append(s, old.vault, kind="admin", action="note", actor=audit.Actor("t", "admin", "cli"),
                         details={"i": i})
    dest = tmp_path / "b"
    result = svc.backup(old, operator(), dest, PASS)
    assert result.schema == "0002"
    new = Container(settings_for(tmp_path / "new", f"sqlite:///{tmp_path / 'new' / 'kb.sqlite3'}"))
    r = svc.restore(new, operator(), dest, PASS, rebuild=False)
    assert (r.schema_from, r.schema_to) == ("0002", migrate.head_revision(new.engine))
    assert r.audit_ok and r.audit_checked == 3  # the backup's own record was written after its snapshot
    old.engine.dispose()
    new.engine.dispose()


def test_cli_backup_and_restore(populated, tmp_path, empty_db_url, monkeypatch):
    from app.cli import cli

    runner = CliRunner()
    s = populated.settings
    env = {"KB_DATA_DIR": str(s.data_dir), "KB_DATABASE_URL": s.database_url, "KB_PII__ENABLED": "false"}
    out = runner.invoke(cli, ["backup", str(tmp_path / "cli-b"), "--passphrase-stdin", "--json"],
                        input=PASS + "\n", env=env)
    assert out.exit_code == 0, out.output
    made = json.loads(out.output)
    assert made["documents"] == 3
    env = {"KB_DATA_DIR": str(tmp_path / "cli-r"), "KB_DATABASE_URL": empty_db_url, "KB_PII__ENABLED": "false"}
    out = runner.invoke(cli, ["restore", str(tmp_path / "cli-b"), "--passphrase-stdin"], input="wrong one\n",
                        env=env, standalone_mode=False, catch_exceptions=True)
    assert isinstance(out.exception, KbError) and "Wrong passphrase" in str(out.exception)
    out = runner.invoke(cli, ["restore", str(tmp_path / "cli-b"), "--passphrase-stdin", "--json", "--no-rebuild"],
                        input=PASS + "\n", env=env)
    assert out.exit_code == 0, out.output
    done = json.loads(out.output)
    assert done["audit_ok"] and done["documents"] == 3 and done["backup_id"] == made["backup_id"]
