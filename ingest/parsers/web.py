"""HTML with BeautifulSoup over lxml: visible text in reading order, headings start sections.

Why bs4 + lxml: lxml (BSD) is the fastest tolerant HTML parser in Python and bs4 (MIT) gives a
forgiving tree for the messy markup found in exported pages and e-mail bodies. Scripts, styles,
navigation and other non-content elements are dropped.
"""

from __future__ import annotations

import re
import warnings

from ingest.detect import decode_text
from ingest.parsers.base import finish, guard, markdown_table
from ingest.types import ParsedDocument, Section

_DROP = ["script", "style", "noscript", "template", "nav", "svg", "iframe", "object", "head", "button", "select"]
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {
    "p", "div", "li", "tr", "br", "pre", "blockquote", "section", "article", "table", "ul", "ol", "dd",
    "dt", "dl", "header", "footer", "main", "aside", "figure", "figcaption", "hr", "address", "form",
    "fieldset", "details", "summary", "caption", "thead", "tbody", "body", "td", "th",
}  # fmt: skip
_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_\-]+)", re.IGNORECASE)


def decode_html(data: bytes) -> str:
    """A declared ``<meta charset>`` wins when it decodes cleanly; otherwise our detection."""
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        match = _META_CHARSET.search(data[:4096])
        if match:
            try:
                return data.decode(match.group(1).decode("ascii").lower())
            except (LookupError, UnicodeDecodeError):
                pass
    return decode_text(data)


def html_sections(html: str) -> tuple[str | None, list[Section]]:
    """Title and heading-delimited sections of an HTML document (also used for e-mail and EPUB)."""
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML is still HTML to us
        soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup(_DROP):
        tag.decompose()
    _tables_to_markdown(soup)
    sections: list[Section] = []
    heading: str | None = None
    parts: list[str] = []
    last_block = None
    skip = (Comment, Declaration, Doctype, ProcessingInstruction)
    for string in soup.find_all(string=True):
        if isinstance(string, skip):
            continue
        block = next((p for p in string.parents if p.name in _BLOCKS), None)
        heading_tag = next((p for p in string.parents if p.name in _HEADINGS), None)
        if heading_tag is not None:
            if block is heading_tag and last_block is heading_tag:
                continue  # rest of a heading already taken whole below
            sections.append(Section(text="".join(parts), heading=heading))
            heading, parts = heading_tag.get_text(" ", strip=True), []
            parts.append(heading + "\n")
            last_block = heading_tag
            continue
        in_pre = any(p.name == "pre" for p in string.parents)
        text = str(string) if in_pre else re.sub(r"\s+", " ", str(string))
        if block is not last_block:
            parts.append("\n")
            last_block = block
            text = text.lstrip() if not in_pre else text
        parts.append(text)
    sections.append(Section(text="".join(parts), heading=heading))
    if title is None:
        first_h1 = next((s.heading for s in sections if s.heading), None)
        title = first_h1
    return title, sections


def _tables_to_markdown(soup) -> None:
    """Each data table becomes a ``<pre>`` holding its Markdown rows (header first), innermost tables
    first; a layout table (one row or one column) is left as text. ``colspan`` repeats the value so
    values stay under their columns."""
    for table in reversed(soup.find_all("table")):
        rows = []
        for tr in table.find_all("tr"):
            if tr.find_parent("table") is not table:
                continue
            cells = []
            for cell in tr.find_all(["td", "th"], recursive=False):
                text = cell.get_text(" ", strip=True)
                span = cell.get("colspan")
                cells.extend([text] * (int(span) if str(span or "").isdigit() and 0 < int(span) <= 50 else 1))
            rows.append(cells)
        if len(rows) < 2 or max((len(r) for r in rows), default=0) < 2:
            continue
        pre = soup.new_tag("pre")
        pre.string = "\n" + markdown_table(rows) + "\n"
        table.replace_with(pre)


class HtmlParser:
    formats = ("html",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("html"):
            title, sections = html_sections(decode_html(data))
        return finish(sections, "html", title=title)
