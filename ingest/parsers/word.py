"""DOCX with python-docx: paragraphs and tables in reading order, headings start sections.

Why python-docx: the standard, MIT-licensed reader of WordprocessingML; it gives paragraph styles
(so headings are known) and tables in body order, and it is pure Python with lxml underneath.
Text boxes (drawn shapes) are read from the XML directly because python-docx skips them.
"""

from __future__ import annotations

import io

from ingest.parsers.base import finish, guard
from ingest.types import ParsedDocument, Section

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
# Text boxes appear twice (modern drawing + VML fallback); read only the modern copy.
_TEXTBOX_PARAS = ".//w:txbxContent[not(ancestor::mc:Fallback)]/w:p"
_NS = {"w": _W, "mc": _MC}


def _paragraph_text(p_element) -> str:
    return "".join(p_element.xpath(".//w:t/text()", namespaces=_NS)) if p_element is not None else ""


def _table_lines(table) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                continue
            seen.add(id(cell._tc))
            text = " ".join(cell.text.split())
            if text:
                cells.append(text)
        if cells:
            lines.append(" | ".join(cells))
    return lines


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
                    lines.extend(_table_lines(block))
                    continue
                text = block.text.strip()
                boxes = [_paragraph_text(p) for p in block._p.xpath(_TEXTBOX_PARAS, namespaces=_NS)]
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
