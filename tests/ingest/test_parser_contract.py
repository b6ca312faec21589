"""Every parser in ingest.parsers runs the Parser contract on a real sample (tests/fixtures/docs, see
SOURCES.tsv there)."""

from __future__ import annotations

from ingest.parsers import PARSERS
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
from ingest.types import DocStatus
from tests.contracts.parser import ParserContract, RefusingParserContract

PAGE, SHEET, HEADING = frozenset({"page"}), frozenset({"sheet"}), frozenset({"heading"})


class TestPdfParser(ParserContract):
    parser, fmt, positions = PdfParser(), "pdf", PAGE
    sample, phrase = "pypdf/outlines-with-invalid-destinations.pdf", "Hello, here is some text without a meaning."


class TestDocxParser(ParserContract):
    parser, fmt, positions = DocxParser(), "docx", HEADING
    sample, phrase = "unstructured/handbook-1p.docx", "The United States Trustee appoints"


class TestXlsxParser(ParserContract):
    parser, fmt, positions = XlsxParser(), "xlsx", SHEET
    sample, phrase = "unstructured/stanley-cups.xlsx", "Team: Maple Leafs; Location: TOR; Stanley Cups: 13"


class TestXlsParser(ParserContract):
    parser, fmt, positions = XlsParser(), "xls", SHEET
    sample, phrase = "unstructured/tests-example.xls", "What is 2+2?"


class TestCsvParser(ParserContract):
    parser, fmt, lenient = CsvParser(), "csv", True
    sample, phrase = "unstructured/semicolon-delimited.csv", "dolor sit: adipiscing"


class TestPptxParser(ParserContract):
    parser, fmt, positions = PptxParser(), "pptx", PAGE | HEADING
    sample, phrase = "unstructured/language-docs/eng_spa_mult.ppt", "This is a slide note."  # a .pptx named .ppt


class TestDocParser(ParserContract):
    parser, fmt = DocParser(), "doc"
    sample, phrase = "unstructured/simple.doc", "This is my first thought."


class TestPptParser(ParserContract):
    parser, fmt = PptParser(), "ppt"
    sample, phrase = "unstructured/fake-power-point.ppt", "Here is some text in a text box!"


class TestEncryptedOfficeParser(RefusingParserContract):
    parser, fmt, refuses = EncryptedOfficeParser(), "office-encrypted", DocStatus.needs_password
    sample = "unstructured/password_protected.xlsx"  # an OLE2 box holding an EncryptedPackage stream


class TestHtmlParser(ParserContract):
    parser, fmt, positions, lenient = HtmlParser(), "html", HEADING, True
    sample, phrase = "unstructured/fake-html-cp1252.html", "Der Preis betrug 15,50 €."


class TestEmlParser(ParserContract):
    parser, fmt, positions, lenient = EmlParser(), "eml", HEADING, True
    sample, phrase = "unstructured/eml/fake-email-attachment.eml", "Lots of whitespace"


class TestMsgParser(ParserContract):
    parser, fmt, positions = MsgParser(), "msg", HEADING
    sample, phrase = "unstructured/fake-email-attachment.msg", "Here's the attachments!"


class TestOdtParser(ParserContract):
    parser, fmt = OdtParser(), "odt"
    sample, phrase = "unstructured/fake.odt", "Lorem ipsum dolor sit amet."


class TestRtfParser(ParserContract):
    parser, fmt, lenient = RtfParser(), "rtf", True
    sample, phrase = "unstructured/fake-doc.rtf", "Row 2, Cell 1"


class TestEpubParser(ParserContract):
    parser, fmt, positions = EpubParser(), "epub", HEADING
    sample, phrase = "unstructured/language-docs/eng_spa_mult.epub", "nacen libres e iguales"


class TestMarkdownParser(ParserContract):
    parser, fmt, positions, lenient = MarkdownParser(), "md", HEADING, True
    sample, phrase = "unstructured/umlauts-utf8.md", "äöüß"


class TestTextParser(ParserContract):
    parser, fmt, lenient = TextParser(), "txt", True
    sample, phrase = "unstructured/language-docs/eng_spa.txt", "All human beings are born free"


class TestImageParser(ParserContract):
    parser, fmt, positions = ImageParser(), "png", PAGE
    sample, phrase = "kb/scanned-receipt.png", "Scanned receipt: paid in full."  # read with OCR


def test_every_registered_parser_runs_the_contract() -> None:
    covered = {type(v.parser) for v in globals().values() if isinstance(v, type) and issubclass(v, ParserContract)
               and v.__name__.startswith("Test")}
    assert {type(p) for p in PARSERS.values()} <= covered
