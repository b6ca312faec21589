"""DOCX with python-docx: paragraphs and tables in reading order, headings start sections.

Why python-docx: the standard, MIT-licensed reader of WordprocessingML; it gives paragraph styles
(so headings are known) and tables in body order, and it is pure Python with lxml underneath.
Text boxes (drawn shapes) are read from the XML directly because python-docx skips them.
"""

from __future__ import annotations

import io

from lxml import etree

from ingest.parsers.base import finish, guard, markdown_table
from ingest.types import ParsedDocument, Section

_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}
# Text boxes appear twice (modern drawing + VML fallback); read only the modern copy.
_TEXTBOX_PARAS = etree.XPath(".//w:txbxContent[not(ancestor::mc:Fallback)]/w:p", namespaces=_NS)
_TEXTS = etree.XPath(".//w:t/text()", namespaces=_NS)
_ROWS = etree.XPath("./w:tr", namespaces=_NS)
_CELLS = etree.XPath("./w:tc", namespaces=_NS)
_CELL_PARAS = etree.XPath(".//w:p", namespaces=_NS)


def _table_lines(tbl_element) -> list[str]:
    """The table as Markdown rows (header first) read from the XML: python-docx's cell grid fails on
    irregular merged tables."""
    rows = []
    for tr in _ROWS(tbl_element):
        rows.append([" ".join(" ".join("".join(_TEXTS(p)) for p in _CELL_PARAS(tc)).split()) for tc in _CELLS(tr)])
    table = markdown_table(rows)
    return ["", table, ""] if table else []


def _heading_level(paragraph) -> int | None:
    try:
        name = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    except (KeyError, AttributeError):
        return None
    if name == "title":
        return 0
    if name.startswith("heading"):
        digits = name.removeprefix("heading").strip()
        return int(digits) if digits.isdigit() else 1
    return None


class DocxParser:
    formats = ("docx",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import docx
        from docx.table import Table

        with guard("docx"):
            document = docx.Document(io.BytesIO(data))
            sections: list[Section] = []
            current = Section(text="")
            lines: list[str] = []
            title = None

            def flush() -> None:
                current.text = "\n".join(lines)
                sections.append(current)

            for block in document.iter_inner_content():
                if isinstance(block, Table):
                    lines.extend(_table_lines(block._tbl))
                    continue
                text = block.text.strip()
                boxes = ["".join(_TEXTS(p)) for p in _TEXTBOX_PARAS(block._p)]
                level = _heading_level(block)
                if level is not None and text:
                    flush()
                    current, lines = Section(text="", heading=text), []
                    if level == 0 and title is None:
                        title = text
                if text:
                    lines.append(text)
                lines.extend(b for b in boxes if b.strip())
            flush()
            extra = _headers_and_footers(document)
            if extra:
                sections.append(Section(text="\n".join(extra), heading="Headers and footers"))
            props = document.core_properties
            title = props.title or title
            metadata = {"author": props.author} if props.author else {}
        return finish(sections, "docx", title=title, metadata=metadata)


def _headers_and_footers(document) -> list[str]:
    seen: list[str] = []
    for section in document.sections:
        for part in (section.header, section.footer):
            try:
                if part.is_linked_to_previous:
                    continue
                paragraphs = [p.text.strip() for p in part.paragraphs]
            except (AttributeError, KeyError, ValueError):
                continue
            for text in paragraphs:
                if text and text not in seen:
                    seen.append(text)
    return seen
