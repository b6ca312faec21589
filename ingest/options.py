"""What a parser may need beyond the bytes: OCR limits from settings and, once, a password.

The ``Parser`` protocol stays ``parse(data, filename)``; ``ingest.parsers.parse(..., options=...)``
sets these for the duration of one call (a context variable, so threads and nested parses of e-mail
attachments see their own). A parser that has no use for them never looks.

The password is used to open the file and nothing else: it is not part of ``repr`` (so it never
reaches a log line or a traceback's locals summary), and nothing here writes it anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import IngestSettings


@dataclass(frozen=True)
class ParseOptions:
    ocr: bool = True  # read pages without a text layer and images with OCR
    ocr_dpi: int = 200  # PDF pages are rendered at this resolution for OCR
    ocr_max_pages: int = 500  # pages OCR reads in one document; the rest are left out and the reason says so
    ocr_max_seconds: float = 1800.0  # OCR time for one document; pages after it are left out
    max_image_pixels: int = 60_000_000  # one image (or rendered page) larger than this is refused
    password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, ingest: IngestSettings, password: str | None = None) -> ParseOptions:
        return cls(ocr=ingest.ocr_enabled, ocr_dpi=ingest.ocr_dpi, ocr_max_pages=ingest.ocr_max_pages,
                   ocr_max_seconds=ingest.ocr_max_seconds, max_image_pixels=ingest.max_image_pixels,
                   password=password)


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
