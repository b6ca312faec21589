"""RTF with striprtf: control words removed, ``\\'xx`` bytes decoded with the document's code page.

Why striprtf: small, BSD-licensed and pure Python; RTF text is plain content between control
words, so a full RTF model (and a LibreOffice dependency) is not needed for indexing.
"""

from __future__ import annotations

import codecs
import re

from ingest.parsers.base import finish, guard
from ingest.types import ParsedDocument, Section

_CODEPAGE = re.compile(rb"\\ansicpg(\d+)")


class RtfParser:
    formats = ("rtf",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        from striprtf.striprtf import rtf_to_text

        with guard("rtf"):
            match = _CODEPAGE.search(data[:4096])
            encoding = f"cp{match.group(1).decode()}" if match else "cp1252"
            try:
                codecs.lookup(encoding)
            except LookupError:
                encoding = "cp1252"
            # RTF is 7-bit by spec; stray 8-bit bytes are read in the declared code page.
            source = data.decode(encoding, errors="replace")
            text = rtf_to_text(source, encoding=encoding, errors="replace")
        return finish([Section(text=text)], "rtf")
