"""A collection's PII policy: "identifiers" keeps names and addresses (public documents), "all" scrubs them;
changing it indexes the collection again from the sealed originals, audited, admins only."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from app.errors import KbError, PermissionDenied
from app.models import AuditRecord, Chunk, Collection, Document
from app.services import users
from app.services.caller import Caller, operator
from app.settings import PiiSettings
from ingest.pii import for_policy
from ingest.submit import submit_paths
from ingest.types import DocStatus
from ingest.worker import Worker

REPORT = ("沙湾县县长张伟表示，今年全县新修公路二百公里。"
          "联系人 John Miller，电话 13812345678，邮箱 office@shawan.example。")


def _texts(container, collection: str) -> list[str]:
    with container.sessions() as s:
        rows = s.execute(select(Chunk, Document).join(Document, Document.id == Chunk.document_id)
                         .join(Collection, Collection.id == Document.collection_id)
                         .where(Collection.name == collection)).all()
        return [container.vault.open_text(container.vault.data_key(s, d.dek_id), ch.text_sealed, "chunks", d.id,
                                          ch.idx) for ch, d in rows]


def _ingest(container, tmp_path, collection: str) -> None:
    folder = tmp_path / collection
    folder.mkdir()
    (folder / "report.txt").write_text(REPORT, encoding="utf-8")
    list(submit_paths(container, [folder], collection))
    Worker(container).run_once()


def test_identifiers_policy_keeps_names_and_places_but_not_identifiers(container, tmp_path):
    users.create_collection(container, operator(), "public", "Published reports", pii="identifiers")
    _ingest(container, tmp_path, "public")
    _ingest(container, tmp_path, "staff")  # created on upload: the default policy
    public, = _texts(container, "public")
    staff, = _texts(container, "staff")
    for kept in ("张伟", "John Miller"):
        assert kept in public and kept not in staff
    for secret in ("13812345678", "office@shawan.example"):
        assert secret not in public and secret not in staff
    assert "<PERSON>" in staff and "<PERSON>" not in public
    assert [(c.name, c.pii) for c in users.collections(container, operator())] == [("public", "identifiers"),
                                                                                    ("staff", "all")]


def test_changing_the_policy_indexes_the_collection_again_and_is_audited(container, tmp_path):
    _ingest(container, tmp_path, "staff")
    assert "张伟" not in _texts(container, "staff")[0]
    assert users.set_pii_policy(container, operator(), "staff", "identifiers") == 1
    assert _texts(container, "staff") == []  # the old chunks left the index at once
    Worker(container).run_once()
    assert "张伟" in _texts(container, "staff")[0]
    assert users.set_pii_policy(container, operator(), "staff", "identifiers") == 0  # unchanged: nothing to do
    with container.sessions() as s:
        record = s.scalars(select(AuditRecord).where(AuditRecord.action == "collection.pii")).first()
        assert record is not None and record.target == "staff"


def test_policy_changes_are_refused_to_staff_to_unknown_policies_and_mid_indexing(container, tmp_path):
    _ingest(container, tmp_path, "staff")
    with pytest.raises(PermissionDenied):
        users.set_pii_policy(container, Caller("bob", "staff", "ui"), "staff", "identifiers")
    with pytest.raises(KbError, match="Unknown PII policy 'none'"):
        users.set_pii_policy(container, operator(), "staff", "none")
    with pytest.raises(KbError, match="Unknown PII policy"):
        users.create_collection(container, operator(), "other", pii="names")
    with container.sessions.begin() as s:
        s.scalars(select(Document)).one().status = DocStatus.processing
    with pytest.raises(KbError, match="being indexed right now"):
        users.set_pii_policy(container, operator(), "staff", "identifiers")


def test_for_policy_drops_people_and_places_and_keeps_the_rest():
    base = PiiSettings(entities=["PHONE", "EMAIL", "PERSON", "ADDRESS", "LOCATION", "CN_ID"])
    assert for_policy(base, "all") is base
    kept = for_policy(base, "identifiers")
    assert kept.entities == ["PHONE", "EMAIL", "CN_ID"] and not kept.scrub_names
    assert "PERSON" not in (for_policy(PiiSettings(), "identifiers").entities or [])


def test_cli_creates_lists_and_changes_policies(tmp_path):
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KB_")}, "KB_DATA_DIR": str(tmp_path / "data")}

    def kb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    assert kb("init").returncode == 0
    r = kb("collections", "add", "public", "--pii", "identifiers")
    assert r.returncode == 0 and "PII scrubbed: identifiers" in r.stdout, r.stderr
    assert "identifiers" in kb("collections", "list").stdout
    r = kb("collections", "pii", "public", "all")
    assert r.returncode == 0 and "0 document(s) queued" in r.stdout, r.stderr
    r = kb("collections", "pii", "public", "nothing")
    assert r.returncode != 0 and "'all', 'identifiers'" in r.stderr
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The archive opens at nine.", encoding="utf-8")
    first = kb("ingest", str(tmp_path / "docs"), "-c", "minutes")
    assert first.returncode == 0 and "new collection 'minutes': all personal data is scrubbed" in first.stdout
    assert "new collection" not in kb("ingest", str(tmp_path / "docs"), "-c", "minutes").stdout
