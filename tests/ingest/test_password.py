"""Password-protected files: the admin gives the password at retry (service, CLI), the file is opened once
in memory and indexed; the password is found nowhere afterwards (data dir, database, audit log, logs)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.services import documents
from app.settings import NON_SETTING_VARIABLES
from ingest.options import ParseOptions
from ingest.parsers import parse
from ingest.submit import submit_paths
from ingest.types import DocStatus, IngestError
from ingest.worker import Worker
from tests.conftest import FIXTURES

PDF = FIXTURES / "password" / "libreoffice-writer-password.pdf"
PDF_PASSWORD = "openpassword"  # noqa: S105 - the fixture's published password
OFFICE_PASSWORD = "Kb-Office-Secret-7"  # noqa: S105


def encrypted_docx() -> bytes:
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile

    doc = docx.Document()
    doc.add_paragraph("The safe combination is kept by the internal auditor.")
    plain = io.BytesIO()
    doc.save(plain)
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(plain.getvalue())).encrypt(OFFICE_PASSWORD, out)
    return out.getvalue()


def test_pdf_and_office_open_with_the_password_only() -> None:
    assert "Lorem ipsum" in parse(PDF.read_bytes(), "a.pdf", ParseOptions(password=PDF_PASSWORD)).text
    data = encrypted_docx()
    doc = parse(data, "a.docx", ParseOptions(password=OFFICE_PASSWORD))
    assert doc.format == "docx" and "internal auditor" in doc.text
    for blob, name in ((PDF.read_bytes(), "a.pdf"), (data, "a.docx")):
        with pytest.raises(IngestError) as none:
            parse(blob, name)
        assert none.value.status == DocStatus.needs_password and "--password-stdin" in none.value.reason
        with pytest.raises(IngestError) as wrong:
            parse(blob, name, ParseOptions(password="not-it"))
        assert wrong.value.status == DocStatus.needs_password and "does not open it" in wrong.value.reason
    assert PDF_PASSWORD not in repr(ParseOptions(password=PDF_PASSWORD))


@pytest.mark.slow
def test_encrypted_files_index_after_retry_with_password(container, tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "minutes.pdf").write_bytes(PDF.read_bytes())
    (folder / "safe.docx").write_bytes(encrypted_docx())
    list(submit_paths(container, [folder], "vault"))
    Worker(container).run_once()
    with container.sessions() as s:
        ids = {Path(v.source).name: v.id for v in documents.list_documents(s)}
        assert {v.status for v in documents.list_documents(s)} == {DocStatus.needs_password}

    for key in [k for k in os.environ if k.startswith("KB_") and k not in NON_SETTING_VARIABLES]:
        monkeypatch.delenv(key)
    env = {"KB_DATA_DIR": str(container.settings.data_dir), "KB_DATABASE__URL": container.settings.database_url}
    runner = CliRunner()
    wrong = runner.invoke(cli, ["-v", "docs", "retry", str(ids["minutes.pdf"]), "--password-stdin"], env=env,
                          input="not-the-password\n")
    assert wrong.exit_code == 1 and "needs_password" in wrong.output and "does not open it" in wrong.output
    ok = runner.invoke(cli, ["-v", "docs", "retry", str(ids["minutes.pdf"]), "--password-stdin"], env=env,
                       input=PDF_PASSWORD + "\n")
    assert ok.exit_code == 0, ok.output
    assert f"document {ids['minutes.pdf']}: indexed" in ok.output

    from app.services.caller import operator

    documents.retry_docs(container, operator(), [ids["safe.docx"]], password=OFFICE_PASSWORD)
    with container.sessions() as s:
        for name in ("minutes.pdf", "safe.docx"):
            view = documents.get_document(s, ids[name])
            assert view.status == DocStatus.indexed and view.n_chunks > 0, (name, view)
    hits = container.search_index.search("who keeps the safe combination", 3, None)
    assert hits

    secrets = [PDF_PASSWORD, OFFICE_PASSWORD]
    logs = caplog.text + wrong.output + ok.output
    for secret in secrets:
        assert secret not in logs
        for path in container.settings.data_dir.rglob("*"):
            if path.is_file():
                raw = path.read_bytes()
                for form in (secret.encode(), secret.encode("utf-16-le")):
                    assert form not in raw, f"{secret!r} found in {path}"
