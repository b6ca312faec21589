"""What a parser may need beyond the bytes: OCR limits from settings and, once, a password.

The ``Parser`` protocol stays ``parse(data, filename)``; ``ingest.parsers.parse(..., options=...)``
sets these for the duration of one call (a context variable, so threads and nested parses of e-mail
attachments see their own). A parser that has no use for them never looks.

The password is used to open the file and nothing else: it is not part of ``repr`` (so it never
reaches a log line or a traceback's locals summary), and nothing here writes it anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.types import DocStatus, IngestError

if TYPE_CHECKING:
    from app.settings import IngestSettings

Progress = Callable[[int, int], None]  # (pages read, pages to read)


class OcrDeferred(IngestError):
    """Raised by a parser that would run OCR when the caller asked it not to here (``defer_ocr``):
    the worker then reads the document in its OCR lane, so a long scan does not hold up the text
    documents claimed with it. An IngestError so that parsers' guards let it through; never a
    document's final status."""

    def __init__(self, pages: int) -> None:
        super().__init__(DocStatus.processing, f"{pages} page(s) need OCR")
        self.pages = pages


@dataclass(frozen=True)
class ParseOptions:
    ocr: bool = True  # read pages without a text layer and images with OCR
    ocr_dpi: int = 200  # PDF pages are rendered at this resolution for OCR
    ocr_max_pages: int = 500  # pages OCR reads in one document; the rest are left out and the reason says so
    ocr_max_seconds: float = 1800.0  # OCR time for one document; pages after it are left out
    max_image_pixels: int = 60_000_000  # one image (or rendered page) larger than this is refused
    defer_ocr: bool = False  # raise OcrDeferred instead of running OCR (the worker's text lane)
    password: str | None = field(default=None, repr=False, compare=False)
    progress: Progress | None = field(default=None, repr=False, compare=False)  # called after each OCR page

    @classmethod
    def from_settings(cls, ingest: IngestSettings, password: str | None = None, *, defer_ocr: bool = False,
                      progress: Progress | None = None) -> ParseOptions:
        return cls(ocr=ingest.ocr_enabled, ocr_dpi=ingest.ocr_dpi, ocr_max_pages=ingest.ocr_max_pages,
                   ocr_max_seconds=ingest.ocr_max_seconds, max_image_pixels=ingest.max_image_pixels,
                   defer_ocr=defer_ocr, password=password, progress=progress)


_CURRENT: ContextVar[ParseOptions] = ContextVar("kb_parse_options", default=ParseOptions())  # noqa: B039 - frozen


def current() -> ParseOptions:
    """The options of the parse in progress (defaults outside one)."""
    return _CURRENT.get()


@contextmanager
def using(options: ParseOptions | None) -> Iterator[ParseOptions]:
    if options is None:
        yield _CURRENT.get()
        return
    token = _CURRENT.set(options)
    try:
        yield options
    finally:
        _CURRENT.reset(token)
