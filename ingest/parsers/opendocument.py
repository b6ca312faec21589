"""ODT with odfpy: paragraphs and list/table text in order, ``text:h`` headings start sections.

Why odfpy: the reference Python implementation of OpenDocument (Apache-2.0/LGPL dual), pure
Python, and it exposes the element tree so headings and outline levels are known.
"""

from __future__ import annotations

import io

from ingest.parsers.base import finish, guard
from ingest.types import ParsedDocument, Section

_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"


def _text_of(node) -> str:
    """Text of a paragraph, honouring spaces, tabs and line breaks, skipping notes' bodies."""
    out: list[str] = []
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            out.append(child.data)
            continue
        name = child.qname
        if name == (_TEXT_NS, "s"):
            out.append(" " * int(child.attributes.get((_TEXT_NS, "c"), 1) or 1))
        elif name == (_TEXT_NS, "tab"):
            out.append("\t")
        elif name == (_TEXT_NS, "line-break"):
            out.append("\n")
        elif name == (_TEXT_NS, "note"):
            continue
        else:
            out.append(_text_of(child))
    return "".join(out)


class OdtParser:
    formats = ("odt",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        from odf import opendocument

        with guard("odt"):
            document = opendocument.load(io.BytesIO(data))
            sections: list[Section] = []
            current = Section(text="")
            lines: list[str] = []

            def walk(node) -> None:
                nonlocal current, lines
                for child in node.childNodes:
                    if child.nodeType != child.ELEMENT_NODE:
                        continue
                    if child.qname == (_TEXT_NS, "h"):
                        heading = _text_of(child).strip()
                        current.text = "\n".join(lines)
                        sections.append(current)
                        current, lines = Section(text="", heading=heading or None), [heading]
                    elif child.qname == (_TEXT_NS, "p"):
                        lines.append(_text_of(child))
                    else:
                        walk(child)

            walk(document.text)
            current.text = "\n".join(lines)
            sections.append(current)
            title = _meta_title(document)
        return finish(sections, "odt", title=title)


def _meta_title(document) -> str | None:
    from odf import dc

    for element in document.meta.getElementsByType(dc.Title):
        text = _text_of(element).strip()
        if text:
            return text
    return None
