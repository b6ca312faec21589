"""Plain text and Markdown: our encoding detection; Markdown ``#`` headings start sections.

No library: Markdown is indexed as written (its markup is readable text), only ATX headings outside
fenced code blocks are recognised so citations can name the section.
"""

from __future__ import annotations

import re

from ingest.detect import decode_text
from ingest.parsers.base import finish, guard
from ingest.types import ParsedDocument, Section

_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


class TextParser:
    formats = ("txt",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("txt"):
            text = decode_text(data)
        return finish([Section(text=text)], "txt")


class MarkdownParser:
    formats = ("md",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("md"):
            sections: list[Section] = []
            current = Section(text="")
            lines: list[str] = []
            fenced = False
            title = None
            for line in decode_text(data).splitlines():
                if _FENCE.match(line):
                    fenced = not fenced
                match = None if fenced else _ATX.match(line)
                if match:
                    current.text = "\n".join(lines)
                    sections.append(current)
                    heading = match.group(2)
                    if title is None and len(match.group(1)) == 1:
                        title = heading
                    current, lines = Section(text="", heading=heading or None), []
                lines.append(line)
            current.text = "\n".join(lines)
            sections.append(current)
        return finish(sections, "md", title=title)
