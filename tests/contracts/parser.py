"""The Parser contract: a real sample parses into cited sections of the right format and position types;
empty, broken and foreign input raises IngestError with a terminal status and a reason, never anything else.

Parsers are called directly here, without ``ingest.parsers.parse``'s detection and guard, so each one
keeps its own promise.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ingest.parsers import PARSERS
from ingest.types import TERMINAL, DocStatus, IngestError, ParsedDocument, Parser

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "docs"
POSITIONS = ("page", "sheet", "heading")
# What a parser may answer for input that is not a document of its format.
REFUSALS = TERMINAL - {DocStatus.indexed, DocStatus.duplicate}


def _junk(n: int = 4096) -> bytes:
    return random.Random(20240607).randbytes(n)  # noqa: S311 - fixed junk, not a secret


def assert_refused(exc: IngestError, allowed: set[DocStatus] = REFUSALS) -> None:
    assert isinstance(exc.status, DocStatus) and exc.status in allowed, exc.status
    assert isinstance(exc.reason, str) and len(exc.reason.strip()) >= 10, exc.reason
    assert str(exc) == exc.reason


class ParserContract:
    """Mixin: a concrete class sets ``parser`` (an instance), ``sample`` (a file under tests/fixtures/docs),
    ``fmt`` (the format it parses as), ``phrase`` (text it must contain) and ``positions`` (the Section
    fields this sample fills: page, sheet and/or heading).

    ``lenient``: the format is text underneath (txt, md, csv, html, eml, rtf), so damaged or foreign
    bytes may come out as (damaged) text instead of being refused. ``empty_statuses``: what empty input
    may be refused as. A parser that only ever refuses uses :class:`RefusingParserContract`.
    """

    parser: Parser
    sample: str
    fmt: str
    phrase: str = ""
    positions: frozenset[str] = frozenset()
    lenient: bool = False
    empty_statuses: frozenset[DocStatus] = frozenset({DocStatus.empty, DocStatus.failed, DocStatus.unsupported})

    def _sample(self) -> bytes:
        return (DOCS / self.sample).read_bytes()

    def _parse(self, data: bytes, name: str | None = None) -> ParsedDocument:
        return self.parser.parse(data, name or Path(self.sample).name)

    # ---------------------------------------------------------------- declared and registered
    def test_is_a_registered_parser(self) -> None:
        assert isinstance(self.parser, Parser)
        formats = self.parser.formats
        assert isinstance(formats, tuple) and formats and all(isinstance(f, str) and f for f in formats)
        assert self.fmt in formats
        for fmt in formats:
            assert type(PARSERS[fmt]) is type(self.parser), f"{fmt!r} is not routed to {type(self.parser).__name__}"

    # ---------------------------------------------------------------- a real sample
    def test_parses_sample_into_sections(self) -> None:
        doc = self._parse(self._sample())
        assert isinstance(doc, ParsedDocument)
        assert doc.format == self.fmt
        assert isinstance(doc.sections, list) and doc.sections
        for s in doc.sections:
            assert isinstance(s.text, str) and s.text.strip() and s.text == s.text.strip()
        assert self.phrase in doc.text
        assert doc.title is None or (isinstance(doc.title, str) and doc.title.strip())
        assert isinstance(doc.metadata, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc.metadata.items())

    def test_positions_have_the_right_types(self) -> None:
        sections = self._parse(self._sample()).sections
        for s in sections:
            assert s.page is None or (type(s.page) is int and s.page >= 1), s.page  # 1-based page / slide
            assert s.sheet is None or (type(s.sheet) is str and s.sheet.strip()), s.sheet
            assert s.heading is None or (type(s.heading) is str and s.heading.strip() and "\n" not in s.heading)
        filled = {f for f in POSITIONS if any(getattr(s, f) is not None for s in sections)}
        assert filled == set(self.positions), f"sections fill {sorted(filled)}, expected {sorted(self.positions)}"
        pages = [s.page for s in sections if s.page is not None]
        assert pages == sorted(pages), "pages go in document order"

    def test_parsing_is_repeatable(self) -> None:
        data = self._sample()
        assert self._parse(data) == self._parse(data)
        assert self._parse(data, "renamed.bin").text == self._parse(data).text  # the name is a hint only

    # ---------------------------------------------------------------- what it must refuse
    @pytest.mark.parametrize("data", [b"", b" \n\t\r\n  "], ids=["empty", "blank"])
    def test_empty_input_raises_ingest_error(self, data: bytes) -> None:
        with pytest.raises(IngestError) as err:
            self._parse(data)
        assert_refused(err.value, self.empty_statuses)

    @pytest.mark.parametrize("cut", ["junk", "first_half", "tail"])
    def test_broken_input_raises_ingest_error(self, cut: str) -> None:
        data = self._sample()
        broken = {"junk": _junk(), "first_half": data[: len(data) // 2], "tail": data[len(data) // 2:]}[cut]
        try:
            doc = self._parse(broken)
        except IngestError as exc:
            assert_refused(exc)
            return
        # Only formats that are text underneath may read damaged bytes as (damaged) text.
        assert self.lenient, f"{cut} input parsed instead of being refused"
        assert isinstance(doc, ParsedDocument) and doc.sections and doc.format == self.fmt


class RefusingParserContract(ParserContract):
    """Mixin for a parser that recognises a format only to refuse it (encrypted Office): its sample must
    raise IngestError with ``refuses``; the tests about parsed output do not apply."""

    refuses: DocStatus

    test_parses_sample_into_sections = None  # type: ignore[assignment]
    test_positions_have_the_right_types = None  # type: ignore[assignment]
    test_parsing_is_repeatable = None  # type: ignore[assignment]

    @property
    def empty_statuses(self) -> frozenset[DocStatus]:  # type: ignore[override]
        return frozenset({self.refuses})

    def test_refuses_sample(self) -> None:
        with pytest.raises(IngestError) as err:
            self._parse(self._sample())
        assert_refused(err.value, {self.refuses})
