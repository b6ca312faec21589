"""File discovery: folders, junk files, size limits and zip archives (slip, bomb, nesting, encryption)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from app.settings import IngestSettings
from ingest.discovery import Candidate, Limits, discover
from ingest.parsers import parse
from ingest.types import DocStatus, IngestError

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "docs"
LIMITS = Limits.from_settings(IngestSettings())


def by_source(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {c.source: c for c in candidates}


def test_limits_come_from_settings() -> None:
    limits = Limits.from_settings(IngestSettings(max_file_mb=2, max_archive_entries=7))
    assert limits.max_file_bytes == 2 * 1024 * 1024 and limits.max_archive_entries == 7


def test_folder_walk_skips_junk_and_reads_files(tmp_path: Path) -> None:
    root = tmp_path / "handbook"
    (root / "sub").mkdir(parents=True)
    shutil.copy(DOCS / "unstructured/fake.odt", root / "sub/policy.odt")
    (root / "notes.md").write_text("# Leave\n\nTwenty days a year.", encoding="utf-8")
    for junk in (".DS_Store", "Thumbs.db", "~$notes.docx", ".hidden.txt"):
        (root / junk).write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git/config").write_text("[core]")
    found = by_source(list(discover([root], LIMITS)))
    assert set(found) == {"handbook/notes.md", "handbook/sub/policy.odt"}
    doc = parse(found["handbook/sub/policy.odt"].read(), "policy.odt")
    assert "Lorem ipsum" in doc.text


def test_oversized_file_is_too_large_without_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 3000)
    limits = Limits(max_file_bytes=1000, max_archive_entries=10, max_archive_total_bytes=10**6, max_archive_ratio=100)
    (cand,) = discover([big], limits)
    assert cand.error is not None and cand.error.status == DocStatus.too_large
    assert cand.size == 3000
    with pytest.raises(IngestError):
        cand.read()


def test_docx_is_a_document_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "tables.docx"
    shutil.copy(DOCS / "unstructured/docx-tables.docx", path)
    (cand,) = discover([path], LIMITS)
    assert cand.source == "tables.docx" and cand.error is None


def make_zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_zip_entries_are_read_in_memory(tmp_path: Path) -> None:
    docx = (DOCS / "unstructured/docx-tables.docx").read_bytes()
    archive = make_zip(tmp_path / "bundle.zip", {"a/tables.docx": docx, "b.txt": b"hello", "__MACOSX/._b.txt": b"x"})
    found = by_source(list(discover([archive], LIMITS)))
    assert set(found) == {"bundle.zip!a/tables.docx", "bundle.zip!b.txt"}
    assert found["bundle.zip!a/tables.docx"].read() == docx
    assert "Header Col 1" in parse(found["bundle.zip!a/tables.docx"].read(), "tables.docx").text


def test_zip_slip_entries_are_failed_and_never_extracted(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "evil.zip", {"../../outside.txt": b"pwned", "/etc/cron.d/x": b"pwned", "ok.txt": b"fine"}
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    found = list(discover([archive], LIMITS))
    bad = [c for c in found if c.error is not None]
    assert len(bad) == 2 and all(c.error.status == DocStatus.failed and "zip slip" in c.error.reason for c in bad)
    assert [c.source for c in found if c.error is None] == ["evil.zip!ok.txt"]
    assert not (tmp_path / "outside.txt").exists() and not any(workdir.iterdir())


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.txt": b"\0" * (4 * 1024 * 1024), "ok.txt": b"fine"})
    found = by_source(list(discover([archive], LIMITS)))
    bomb = found["bomb.zip!zeros.txt"]
    assert bomb.error is not None and bomb.error.status == DocStatus.failed and "zip bomb" in bomb.error.reason
    assert found["bomb.zip!ok.txt"].error is None


def test_archive_total_and_entry_limits(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"text %d" % i for i in range(12)})
    few = Limits(max_file_bytes=10**6, max_archive_entries=5, max_archive_total_bytes=10**6, max_archive_ratio=100)
    (cand,) = discover([archive], few)
    assert cand.source == "many.zip" and cand.error.status == DocStatus.too_large and "12 entries" in cand.error.reason
    small = Limits(max_file_bytes=10**6, max_archive_entries=100, max_archive_total_bytes=50, max_archive_ratio=100)
    (cand,) = discover([archive], small)
    assert cand.error.status == DocStatus.too_large


def test_nested_zip_one_level_only(tmp_path: Path) -> None:
    innermost = make_zip(tmp_path / "deep.zip", {"deep.txt": b"too deep"})
    inner = make_zip(tmp_path / "inner.zip", {"doc.txt": b"inside", "deep.zip": innermost.read_bytes()})
    outer = make_zip(tmp_path / "outer.zip", {"inner.zip": inner.read_bytes(), "top.txt": b"top"})
    found = by_source(list(discover([outer], LIMITS)))
    assert found["outer.zip!inner.zip!doc.txt"].read() == b"inside"
    assert found["outer.zip!top.txt"].read() == b"top"
    deep = found["outer.zip!inner.zip!deep.zip"]
    assert deep.error is not None and deep.error.status == DocStatus.unsupported
    assert not any("deep.txt" in s for s in found)


def test_encrypted_entry_needs_password(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "secret.zip", {"plain.txt": b"open", "secret.txt": b"hidden"})
    # Mark the second entry encrypted (general purpose flag bit 0) in both of its headers, as
    # ZipCrypto archives have; the stdlib cannot write encrypted zips itself.
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("secret.txt")
    raw[info.header_offset + 6] |= 0x01
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 8] |= 0x01
    archive.write_bytes(bytes(raw))
    found = by_source(list(discover([archive], LIMITS)))
    assert found["secret.zip!secret.txt"].error.status == DocStatus.needs_password
    assert found["secret.zip!plain.txt"].read() == b"open"


def test_damaged_zip_is_failed(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    (cand,) = discover([path], LIMITS)
    assert cand.error is not None and cand.error.status == DocStatus.failed


def test_missing_path_is_reported(tmp_path: Path) -> None:
    (cand,) = discover([tmp_path / "nope"], LIMITS)
    assert cand.error is not None and cand.error.status == DocStatus.failed
