"""One parser per format family, a registry keyed by format name, and ``parse`` that detects and dispatches.

Use ``parse(data, "report.pdf")``: it returns a ParsedDocument or raises IngestError(status, reason).
"""

from __future__ import annotations

from pathlib import PurePath

from ingest.detect import detect_format
from ingest.options import ParseOptions, using
from ingest.parsers.base import guard
from ingest.parsers.delimited import CsvParser
from ingest.parsers.epub import EpubParser
from ingest.parsers.image import ImageParser
from ingest.parsers.legacy_office import DocParser, EncryptedOfficeParser, PptParser
from ingest.parsers.mail import EmlParser, MsgParser
from ingest.parsers.opendocument import OdtParser
from ingest.parsers.pdf import PdfParser
from ingest.parsers.plain import MarkdownParser, TextParser
from ingest.parsers.rtf import RtfParser
from ingest.parsers.slides import PptxParser
from ingest.parsers.spreadsheet import XlsParser, XlsxParser
from ingest.parsers.web import HtmlParser
from ingest.parsers.word import DocxParser
from ingest.types import DocStatus, IngestError, ParsedDocument, Parser

_ALL: list[Parser] = [
    PdfParser(), DocxParser(), XlsxParser(), XlsParser(), CsvParser(), PptxParser(), DocParser(), PptParser(),
    EncryptedOfficeParser(), HtmlParser(), EmlParser(), MsgParser(), OdtParser(), RtfParser(), EpubParser(),
    MarkdownParser(), TextParser(), ImageParser(),
]  # fmt: skip

PARSERS: dict[str, Parser] = {fmt: parser for parser in _ALL for fmt in parser.formats}
SUPPORTED = sorted(f for f in PARSERS if f != "office-encrypted")

_NOT_PARSED = {
    "zip": "zip archive inside an archive or e-mail: unpack it and upload its files",
    "ods": "OpenDocument spreadsheet (.ods) is not supported yet: save it as .xlsx",
    "odp": "OpenDocument presentation (.odp) is not supported yet: save it as .pptx",
}


def parse(data: bytes, filename: str, options: ParseOptions | None = None) -> ParsedDocument:
    """Detect the format from the bytes (the name only breaks ties) and run its parser.

    ``options`` (OCR limits, a password for this one parse) hold for the call; without them the
    options of an enclosing call, or the defaults. Raises IngestError with a terminal status (empty,
    needs_password, unsupported, failed, too_large); no other exception escapes.
    """
    with using(options):
        return parse_with(None, data, filename)


def parse_with(parser: Parser | None, data: bytes, filename: str) -> ParsedDocument:
    """``parse`` with an explicit parser (None = detect); used for e-mail attachments."""
    if not data.strip():
        raise IngestError(DocStatus.empty, "file is empty")
    if parser is None:
        with guard("file"):
            fmt = detect_format(data, filename)
        if fmt in _NOT_PARSED:
            raise IngestError(DocStatus.unsupported, _NOT_PARSED[fmt])
        parser = PARSERS.get(fmt) if fmt else None
        if parser is None:
            suffix = PurePath(filename).suffix or "(no extension)"
            raise IngestError(
                DocStatus.unsupported,
                f"unrecognised file type {suffix}: kb reads {', '.join(SUPPORTED)}; convert it to one of these",
            )
    with guard(parser.formats[0]):
        return parser.parse(data, filename)


__all__ = ["PARSERS", "SUPPORTED", "parse", "parse_with"]
