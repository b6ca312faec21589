"""Parsers and format detection on real files copied into tests/fixtures/docs (see SOURCES.tsv there)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ingest.detect import decode_text, detect_format
from ingest.options import ParseOptions
from ingest.parsers import PARSERS, parse
from ingest.types import DocStatus, IngestError

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "docs"
ALL_FIXTURES = sorted(p for p in DOCS.rglob("*") if p.is_file())


def fixture(rel: str) -> bytes:
    return (DOCS / rel).read_bytes()


# (file, detected format, phrase that must be in the text)
PARSED = [
    ("pypdf/crazyones.pdf", "pdf", "The Crazy Ones"),
    ("pypdf/encryption/r4-owner-password.pdf", "pdf", "pdf encryption test"),  # owner password only
    ("pypdf/multilang.pdf", "pdf", "你好世界"),
    ("unstructured/docx-tables.docx", "docx", "Header Col 1 | Header Col 2"),
    ("unstructured/docx-shapes.docx", "docx", "Paragraph with floating shape attached."),
    ("unstructured/handbook-1p.docx", "docx", "The United States Trustee appoints"),
    ("unstructured/language-docs/eng_spa_mult.doc", "docx", "Todos los seres humanos"),  # a .docx named .doc
    ("unstructured/stanley-cups.xlsx", "xlsx", "Team: Maple Leafs; Location: TOR; Stanley Cups: 13"),
    ("unstructured/tests-example.xls", "xls", "What is 2+2?"),
    ("unstructured/stanley-cups-utf-16.csv", "csv", "Maple Leafs"),
    ("unstructured/semicolon-delimited.csv", "csv", "dolor sit: adipiscing"),
    ("unstructured/fake-power-point-table.pptx", "pptx", "Tangerine | Pink | Aqua"),
    ("unstructured/language-docs/eng_spa_mult.ppt", "pptx", "This is a slide note."),  # a .pptx named .ppt
    ("unstructured/fake-power-point.ppt", "ppt", "Here is some text in a text box!"),
    ("unstructured/simple.doc", "doc", "This is my first thought."),
    ("unstructured/fake.doc", "doc", "Lorem ipsum dolor sit amet."),
    ("unstructured/fake-html-cp1252.html", "html", "Der Preis betrug 15,50 €."),
    ("unstructured/example-steelJIS-datasheet-utf-16.html", "html", "Japanese Steels and Alloys"),
    ("unstructured/example-with-scripts.html", "html", "Russian Offensive Campaign Assessment"),
    ("unstructured/eml/fake-email-attachment.eml", "eml", "Lots of whitespace"),
    ("unstructured/eml/fake-email-utf-16-be.eml", "eml", "This is a test email to use for unit tests."),
    ("unstructured/eml/fake-email.txt", "eml", "Roses are red"),  # an e-mail named .txt
    ("unstructured/eml/mime-word-encoded-subject.eml", "eml", "Subject: Simple email with ☸☿ Unicode subject"),
    ("unstructured/eml/email-no-utf8-2008-07-16.062410.eml", "eml", "סלבה היקר"),
    ("unstructured/fake-email-attachment.msg", "msg", "Here's the attachments!"),
    ("unstructured/fake.odt", "odt", "Lorem ipsum dolor sit amet."),
    ("unstructured/fake-doc.rtf", "rtf", "Row 2, Cell 1"),
    ("unstructured/language-docs/eng_spa_mult.epub", "epub", "nacen libres e iguales"),
    ("unstructured/umlauts-non-utf8.md", "md", "können"),
    ("unstructured/umlauts-utf8.md", "md", "äöüß"),
    ("unstructured/language-docs/eng_spa.txt", "txt", "All human beings are born free"),
]

REFUSED = [
    ("pypdf/crazyones-encrypted-256.pdf", DocStatus.needs_password),
    ("pypdf/encryption/r6-user-password.pdf", DocStatus.needs_password),
    ("unstructured/pdf/password.pdf", DocStatus.needs_password),
    ("unstructured/password_protected.xlsx", DocStatus.needs_password),  # OLE2 box with EncryptedPackage
    ("unstructured/eml/fake-encrypted.eml", DocStatus.needs_password),  # PGP
    ("unstructured/fake-encrypted.msg", DocStatus.needs_password),
    ("unstructured/empty.xlsx", DocStatus.empty),
    ("unstructured/eml/empty.eml", DocStatus.empty),  # whitespace only
]


@pytest.mark.parametrize(("rel", "fmt", "phrase"), PARSED, ids=[p[0] for p in PARSED])
def test_parses_real_file(rel: str, fmt: str, phrase: str) -> None:
    data = fixture(rel)
    assert detect_format(data, Path(rel).name) == fmt
    doc = parse(data, Path(rel).name)
    assert doc.format == fmt
    assert phrase in doc.text
    assert all(s.text.strip() for s in doc.sections)


@pytest.mark.parametrize(("rel", "status"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refuses_with_status(rel: str, status: DocStatus) -> None:
    with pytest.raises(IngestError) as err:
        parse(fixture(rel), Path(rel).name)
    assert err.value.status == status
    assert err.value.reason


def test_image_only_pdf_says_ocr_when_ocr_is_off() -> None:
    with pytest.raises(IngestError) as err:
        parse(fixture("unstructured/pdf/single_table.pdf"), "scan.pdf", ParseOptions(ocr=False))
    assert err.value.status == DocStatus.empty
    assert "OCR" in err.value.reason


def test_pdf_pages_are_numbered() -> None:
    doc = parse(fixture("pypdf/outlines-with-invalid-destinations.pdf"), "x.pdf")
    assert [s.page for s in doc.sections] == [1, 2, 3, 4]


def test_pptx_slide_numbers_headings_and_notes() -> None:
    doc = parse(fixture("unstructured/language-docs/eng_spa_mult.ppt"), "deck.ppt")
    assert doc.sections[0].page == 1 and doc.sections[0].heading == "Testing multiple languages"
    assert [s.page for s in doc.sections] == sorted(s.page for s in doc.sections)
    assert "Notes: This is a slide note." in doc.sections[0].text


def test_xlsx_sections_carry_sheet_names() -> None:
    doc = parse(fixture("unstructured/stanley-cups.xlsx"), "cups.xlsx")
    assert {s.sheet for s in doc.sections} == {"Stanley Cups", "Stanley Cups Since 67"}


def test_email_attachment_is_its_own_section() -> None:
    doc = parse(fixture("unstructured/eml/fake-email-attachment.eml"), "mail.eml")
    assert doc.title == "Fake email with attachment"
    assert doc.sections[0].text.startswith("From: Mallori Harrell")
    assert any((s.heading or "").startswith("Attachment: fake-attachment.txt") for s in doc.sections)


def test_html_drops_scripts_and_styles() -> None:
    doc = parse(fixture("unstructured/example-with-scripts.html"), "page.html")
    assert "function(" not in doc.text and "{display" not in doc.text.replace(" ", "")
    assert doc.title and "Institute for the Study of War" in doc.title


def test_markdown_headings_become_sections() -> None:
    doc = parse(fixture("unstructured/umlauts-utf8.md"), "x.md")
    assert doc.sections[0].heading == "können"


def test_corrupt_pdf_fails_with_reason() -> None:
    data = fixture("pypdf/crazyones.pdf")[:1500]  # cut off: header present, body and xref gone
    with pytest.raises(IngestError) as err:
        parse(data, "broken.pdf")
    assert err.value.status in (DocStatus.failed, DocStatus.empty)


@pytest.mark.parametrize("name", ["report.docx", "sheet.xlsx", "deck.pptx"])
def test_corrupt_office_package_fails(name: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        part = {"docx": "word/document.xml", "xlsx": "xl/workbook.xml", "pptx": "ppt/presentation.xml"}
        zf.writestr(part[name.rsplit(".", 1)[1]], "<not-closed")
    assert detect_format(buf.getvalue(), "upload.bin") == name.rsplit(".", 1)[1]
    with pytest.raises(IngestError) as err:
        parse(buf.getvalue(), name)
    assert err.value.status == DocStatus.failed


def test_truncated_docx_fails() -> None:
    data = fixture("unstructured/docx-tables.docx")
    with pytest.raises(IngestError) as err:
        parse(data[: len(data) // 2], "half.docx")
    assert err.value.status == DocStatus.failed
    assert "DOCX" in err.value.reason


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", "\ufeff \n".encode()])
def test_empty_input(data: bytes) -> None:
    with pytest.raises(IngestError) as err:
        parse(data, "notes.txt")
    assert err.value.status == DocStatus.empty


def test_unknown_binary_is_unsupported() -> None:
    with pytest.raises(IngestError) as err:
        parse(bytes(range(256)) * 4, "blob.bin")
    assert err.value.status == DocStatus.unsupported


def test_plain_zip_is_not_a_document() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert detect_format(buf.getvalue(), "bundle.docx") == "zip"
    with pytest.raises(IngestError) as err:
        parse(buf.getvalue(), "bundle.zip")
    assert err.value.status == DocStatus.unsupported


def test_every_fixture_parses_or_raises_ingest_error() -> None:
    """No library exception escapes, whatever the file."""
    assert len(ALL_FIXTURES) >= 30
    outcomes: dict[str, int] = {}
    for path in ALL_FIXTURES:
        try:
            doc = parse(path.read_bytes(), path.name)
        except IngestError as exc:
            assert isinstance(exc.status, DocStatus) and exc.reason, path
            outcomes[exc.status] = outcomes.get(exc.status, 0) + 1
        else:
            assert doc.text.strip(), path
            outcomes["parsed"] = outcomes.get("parsed", 0) + 1
    assert outcomes["parsed"] >= 30 and outcomes[DocStatus.needs_password] >= 5


def test_registry_covers_the_formats() -> None:
    expected = {"pdf", "docx", "xlsx", "xls", "csv", "pptx", "ppt", "doc", "html", "eml", "msg", "odt", "rtf"}
    assert expected | {"epub", "md", "txt"} <= set(PARSERS)
    for fmt, parser in PARSERS.items():
        assert fmt in parser.formats


# --- text decoding -------------------------------------------------------------------------------

SIMPLIFIED = "员工手册第三章：年度休假规定。公司的年度财务报告显示收入增长了百分之十二。"
TRADITIONAL = "員工手冊第三章：請假規定。本公司員工每年享有特別休假十四天，請於系統中申請。"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (SIMPLIFIED, "gbk"),
        (SIMPLIFIED, "gb18030"),
        (TRADITIONAL, "big5"),
        (TRADITIONAL, "gbk"),
        (TRADITIONAL, "utf-16"),
    ],
)
def test_decode_cjk(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text


def test_decode_short_gbk_and_big5() -> None:
    assert decode_text("知识库".encode("gbk")) == "知识库"
    assert decode_text("知識庫".encode("big5")) == "知識庫"


def test_decode_fixture_encodings() -> None:
    assert decode_text(fixture("unstructured/umlauts-non-utf8.md")) == decode_text(
        fixture("unstructured/umlauts-utf8.md")
    )
    assert "Stanley Cups" in decode_text(fixture("unstructured/stanley-cups-utf-16.csv"))
    assert "15,50 €" in decode_text(fixture("unstructured/fake-html-cp1252.html"))
    assert decode_text("naïve café – “quoted”".encode("cp1252")) == "naïve café – “quoted”"
    assert decode_text("Grüße aus Köln".encode("iso-8859-1")) == "Grüße aus Köln"


def test_detect_gbk_text_file_and_parse_it() -> None:
    data = ("# 员工手册\n\n" + SIMPLIFIED).encode("gbk")
    doc = parse(data, "手册.md")
    assert doc.sections[0].heading == "员工手册" and SIMPLIFIED in doc.text
