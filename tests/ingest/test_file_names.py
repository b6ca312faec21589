"""Identifiers in file names are scrubbed before a name is stored, searched or cited."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select, text

from app.models import Document
from app.services import search
from app.services.caller import operator
from ingest.pii.file_names import display_safe, scrub_file_name
from ingest.submit import submit_paths
from ingest.worker import Worker

CN_ID = "11010519491231002X"  # a valid GB 11643 number (check digit X)


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.mark.parametrize("name,kind,value", [
    (f"contract_{CN_ID}_lease.txt", "CN_ID", CN_ID),
    ("报销_13812345678_差旅.docx", "PHONE", "13812345678"),
    ("from-jane.doe@example.com.eml", "EMAIL", "jane.doe@example.com"),
])
def test_identifiers_in_names_become_typed_placeholders(name, kind, value):
    scrubbed, n = scrub_file_name(name, _digest)
    assert n == 1 and f"<{kind}~" in scrubbed and value not in scrubbed
    assert scrub_file_name(name, _digest) == (scrubbed, 1)  # stable: the same file keeps its name


def test_two_files_differing_only_in_the_identifier_stay_apart():
    a, _ = scrub_file_name(f"contract_{CN_ID}.txt", _digest)
    b, _ = scrub_file_name("contract_110105194912310029.txt", _digest)
    assert a != b


def test_plain_names_and_dates_are_kept():
    for name in ("report_2024-03-01_v2.pdf", "Q3 budget 2024.xlsx", "folder.zip!policies/a.txt", "员工手册.pdf"):
        assert scrub_file_name(name, _digest) == (name, 0)


def test_bidi_overrides_cannot_spoof_an_extension():
    assert display_safe("invoice\u202etxt.exe") == "invoicetxt.exe"


@pytest.mark.slow
def test_a_pii_file_name_never_reaches_the_database_or_a_citation(container, tmp_path, db_url):
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / f"contract_{CN_ID}_lease.txt").write_text("The lease of the Shenzhen office runs until 2031.")
    list(submit_paths(container, [folder], "legal"))
    Worker(container).run_once()
    with container.sessions() as s:
        sources = list(s.scalars(select(Document.source)))
        dump = " ".join(str(v) for row in s.execute(text("SELECT * FROM documents")).all() for v in row)
    assert len(sources) == 1 and "<CN_ID~" in sources[0] and CN_ID not in dump
    hits = search.search(container, operator(), "Shenzhen office lease", k=3)
    assert hits and all(CN_ID not in h.source for h in hits)
