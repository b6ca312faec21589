"""Tables in a PDF text layer become Markdown rows; chunks holding their rows repeat the header."""

from __future__ import annotations

import ctypes
import io
import re

import pytest

from ingest.chunking import chunk_sections
from ingest.parsers import parse
from tests.conftest import FIXTURES

PDFS = FIXTURES / "docs" / "unstructured" / "pdf"


def words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def text_pdf(pages: list[list[tuple[float, float, str]]], size: float = 9) -> bytes:
    """A PDF with a real text layer: each page a list of (x, y, text) runs in Helvetica."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as c

    doc = pdfium.PdfDocument.new()
    for runs in pages:
        page = doc.new_page(612, 792)
        for x, y, text in runs:
            obj = c.FPDFPageObj_NewTextObj(doc.raw, b"Helvetica", ctypes.c_float(size))
            encoded = (text + "\x00").encode("utf-16-le")
            c.FPDFText_SetText(obj, ctypes.cast(ctypes.create_string_buffer(encoded), ctypes.POINTER(c.FPDF_WCHAR)))
            c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, y)
            c.FPDFPage_InsertObject(page.raw, obj)
        c.FPDFPage_GenerateContent(page.raw)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize(("name", "header", "row"), [
    ("layout-parser-paper-with-table.pdf", "| Dataset | Base Model1 | Large Model | Notes |",
     "| PRImA [3] | M | - | Layouts of scanned modern magazines and scientific reports |"),
    ("embedded-images-tables.pdf",
     "| Inhibitor concentration (g) | bc (V/dec) | ba (V/dec) | Ecorr (V) | icorr (A/cm2 ) | "
     "Polarization resistance (Ω) | Corrosion rate (mm/year) |",
     "| 6 | 0.3233 | 0.0540 | 0.8027 | 5.39E-05 | 373.180 | 0.4318 |"),
])
def test_fixture_pdf_tables_become_markdown_rows(name, header, row) -> None:
    doc = parse((PDFS / name).read_bytes(), name)
    lines = doc.sections[0].text.splitlines()
    at = lines.index(header)  # the header cells wrapped onto two lines are one row
    assert re.fullmatch(r"\| ---( \| ---)* \|", lines[at + 1])
    assert row in lines[at + 2:]
    assert doc.metadata["tables"] == "1"
    body = "\n".join(line for line in lines if not line.startswith("|"))
    assert "0.3233" not in body and "PRImA" not in body  # the cells are not repeated as loose text


def test_generated_table_is_found_and_every_chunk_with_rows_has_its_header() -> None:
    runs = [(72, 740, "Branch limits for the year, as agreed by the board of directors."),
            (72, 710, "Branch"), (200, 710, "City"), (330, 710, "Daily limit")]
    runs += [r for i in range(30) for r in ((72, 695 - 13 * i, f"BR-{i:03}"), (200, 695 - 13 * i, f"City {i}"),
                                             (330, 695 - 13 * i, f"{(i + 1) * 1000} CNY"))]
    runs.append((72, 280, "Limits are reviewed every quarter by the risk committee."))
    doc = parse(text_pdf([runs]), "limits.pdf")
    text = doc.sections[0].text
    assert "| Branch | City | Daily limit |\n| --- | --- | --- |\n| BR-000 | City 0 | 1000 CNY |" in text
    assert "| BR-029 | City 29 | 30000 CNY |" in text
    assert text.index("Branch limits") < text.index("| Branch |") < text.index("Limits are reviewed")
    chunks = chunk_sections(doc.sections, words, size=50, overlap=0)
    with_rows = [c for c in chunks if "| BR-" in c.text]
    assert len(with_rows) >= 3
    for c in with_rows:
        assert "| Branch | City | Daily limit |\n| --- | --- | --- |\n" in c.text, c.text
    found = {line for c in with_rows for line in table_lines(c.text) if line.startswith("| BR-")}
    assert len(found) == 30


def test_prose_in_two_columns_is_not_a_table() -> None:
    left = "Deposits are insured up to the legal limit and interest is paid monthly on the balance".split()
    right = "Loans are approved by the credit committee after a review of income and existing debts".split()
    runs = []
    for i in range(0, len(left), 4):
        runs.append((72, 700 - 12 * (i // 4), " ".join(left[i:i + 4])))
        runs.append((330, 700 - 12 * (i // 4), " ".join(right[i:i + 4])))
    doc = parse(text_pdf([runs]), "columns.pdf")
    assert "|" not in doc.text and "tables" not in doc.metadata
    assert "interest is paid" in doc.text


def test_text_pdf_without_tables_keeps_pdfium_text() -> None:
    data = (FIXTURES / "docs" / "pypdf" / "crazyones.pdf").read_bytes()
    doc = parse(data, "crazyones.pdf")
    assert "tables" not in doc.metadata and "|" not in doc.text and "The Crazy Ones" in doc.text
