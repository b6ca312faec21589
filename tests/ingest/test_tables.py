"""Tables in DOCX, PPTX and HTML become Markdown rows, and every chunk holding rows repeats the header."""

from __future__ import annotations

import re

import pytest

from ingest.chunking import chunk_sections
from ingest.parsers import parse
from ingest.parsers.base import markdown_table
from ingest.types import Section
from tests.conftest import FIXTURES

DOCS = FIXTURES / "docs" / "unstructured"


def words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


@pytest.mark.parametrize(("name", "header", "row"), [
    ("docx-tables.docx", "| Header Col 1 | Header Col 2 |", "| Lorem ipsum | A link example |"),
    ("fake-power-point-table.pptx", "| Column 1 | Column 2 | Column 3 |", "| Tangerine | Pink | Aqua |"),
    ("example-steelJIS-datasheet-utf-16.html", "| Grade : | SNB22-3 |", "| Standards: | JIS G 4108"),
])
def test_fixture_tables_become_markdown_rows(name, header, row) -> None:
    text = parse((DOCS / name).read_bytes(), name).text
    lines = text.splitlines()
    at = lines.index(header)
    assert re.fullmatch(r"\| ---( \| ---)* \|", lines[at + 1])
    assert any(line.startswith(row) for line in lines[at + 2:])


def test_html_table_keeps_columns_with_colspan_and_empty_cells() -> None:
    html = (b"<html><body><p>Rates</p><table><tr><th>Term</th><th>Rate</th><th>Note</th></tr>"
            b"<tr><td>1 year</td><td>1.5%</td><td></td></tr><tr><td colspan=2>n/a</td><td>x</td></tr>"
            b"</table><table><tr><td>layout only</td></tr></table></body></html>")
    text = parse(html, "r.html").text
    assert "| Term | Rate | Note |\n| --- | --- | --- |\n| 1 year | 1.5% |  |\n| n/a | n/a | x |" in text
    assert "layout only" in text and "| layout only |" not in text


def test_every_chunk_with_rows_starts_with_the_header() -> None:
    table = markdown_table([["Branch", "City", "Manager"], *[[f"B{i}", f"City {i}", f"Person {i}"]
                                                             for i in range(40)]])
    sections = [Section("Our branches and who runs them.\n\n" + table + "\n\nEnd of the list.", page=3)]
    chunks = chunk_sections(sections, words, size=60, overlap=10)
    with_rows = [c for c in chunks if "| B" in c.text]
    assert len(with_rows) > 3
    for c in with_rows:
        assert c.text.count("| Branch | City | Manager |\n| --- | --- | --- |\n") == 1, c.text
        assert c.page == 3 and c.n_tokens <= 60
        body = c.text.split("| --- | --- | --- |\n", 1)[1]
        assert all(line.startswith("| B") for line in body.splitlines() if line.startswith("|"))
    rows = {line for c in with_rows for line in c.text.splitlines() if re.match(r"\| B\d+ \|", line)}
    assert len(rows) == 40  # no row lost or cut


def test_a_cell_question_finds_its_row_with_the_column_names() -> None:
    table = markdown_table([["Account", "Owner", "Limit"], *[[f"AC-{i:03}", f"Owner {i}", f"{i * 1000}"]
                                                             for i in range(30)]])
    chunks = chunk_sections([Section(table)], words, size=40, overlap=0)
    hit = next(c for c in chunks if "AC-017" in c.text)
    assert hit.text.startswith("| Account | Owner | Limit |") and "| AC-017 | Owner 17 | 17000 |" in hit.text
