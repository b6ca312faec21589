"""Helpers every parser shares: text clean-up, the empty check, and turning library errors into IngestError."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from ingest.types import DocStatus, IngestError, ParsedDocument, Section

log = logging.getLogger(__name__)

_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Normalise line ends, drop control characters, trailing spaces and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def finish(
    sections: list[Section],
    fmt: str,
    title: str | None = None,
    metadata: dict[str, str] | None = None,
    empty_reason: str | None = None,
) -> ParsedDocument:
    """Clean every section, drop the blank ones, and refuse a document without any text."""
    kept = []
    for section in sections:
        section.text = clean(section.text)
        if section.heading:
            heading = " ".join(section.heading.split())
            section.heading = heading if len(heading) <= 200 else heading[:199] + "…"
        if section.text:
            kept.append(section)
    if not kept:
        raise IngestError(DocStatus.empty, empty_reason or f"no text found in this {fmt.upper()} file")
    title = clean(title) if title else None
    return ParsedDocument(sections=kept, format=fmt, title=title or None, metadata=metadata or {})


def markdown_table(rows: list[list[str]]) -> str:
    """A table as Markdown rows, the first row as its header: ``| a | b |`` / ``| --- | --- |`` / rows.

    Empty cells are kept so every value stays under its column; pipes inside cells are escaped. The
    chunker (ingest.chunking) repeats the header line in every chunk that holds rows of the table.
    """
    cleaned = [[" ".join((c or "").split()).replace("|", "\\|") for c in row] for row in rows]
    cleaned = [row for row in cleaned if any(cleaned_cell for cleaned_cell in row)]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(row) + " |"

    return "\n".join([line(cleaned[0]), "| " + " | ".join(["---"] * width) + " |", *map(line, cleaned[1:])])


def short(exc: BaseException, limit: int = 160) -> str:
    """A one-line summary of a library exception, for the failure reason an admin reads."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return f"{type(exc).__name__}: {message}"


@contextmanager
def guard(fmt: str) -> Iterator[None]:
    """Let IngestError through; turn any other exception into IngestError(failed) with a short reason."""
    try:
        yield
    except IngestError:
        raise
    except MemoryError as exc:
        raise IngestError(DocStatus.too_large, f"{fmt.upper()} file too large to parse in memory") from exc
    except Exception as exc:  # third-party parsers raise anything on damaged input
        log.debug("parser for %s failed", fmt, exc_info=True)
        raise IngestError(
            DocStatus.failed, f"could not read this {fmt.upper()} file, it looks damaged ({short(exc)})"
        ) from exc
