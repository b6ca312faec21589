"""What parsers produce and the terminal statuses of a document. Shared by parsers, scrubber, worker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from app.keys import Vault
    from app.settings import Settings
    from retrieval.types import Embedder


class DocStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    indexed = "indexed"
    duplicate = "duplicate"
    empty = "empty"
    needs_password = "needs_password"  # noqa: S105 - a status name, not a secret
    unsupported = "unsupported"
    too_large = "too_large"
    failed = "failed"


TERMINAL = {s for s in DocStatus if s not in (DocStatus.queued, DocStatus.processing)}


class IngestError(Exception):
    """A file that cannot be indexed, with the terminal status and a short human reason."""

    def __init__(self, status: DocStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Section:
    """A run of text with the position a citation points to."""

    text: str
    page: int | None = None
    sheet: str | None = None
    heading: str | None = None


@dataclass
class ParsedDocument:
    sections: list[Section]
    format: str  # e.g. "pdf", "docx", "html"
    title: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@runtime_checkable
class Parser(Protocol):
    """One format family, registered in ``ingest.parsers.PARSERS`` under each of its ``formats``."""

    formats: tuple[str, ...]  # format names (``ingest.detect``); the first names the family in messages

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        """Text with positions (``Section.page``/``sheet``/``heading``); ``format`` is one of ``formats``.

        Raises IngestError (a terminal status and a reason a user can act on) for password-protected,
        empty or broken input, never another exception. ``filename`` is a hint only, never a path.
        """
        ...


@dataclass(frozen=True)
class PiiEntity:
    type: str  # our type names: CN_ID, PHONE, BANK_CARD, EMAIL, PERSON, ...
    start: int
    end: int
    score: float


@dataclass
class ScrubResult:
    text: str
    entities: list[PiiEntity]


@runtime_checkable
class Scrubber(Protocol):
    """Finds personal data and replaces it with typed placeholders before text is chunked."""

    @property
    def entities(self) -> tuple[str, ...]: ...  # the PII types it looks for (empty: finds nothing)

    def analyze(self, text: str) -> list[PiiEntity]: ...  # spans in ``text``, types among ``entities``

    def analyze_many(self, texts: Iterable[str]) -> list[list[PiiEntity]]:
        """The same as ``analyze`` on each text, in order; faster on many texts at once."""
        ...

    def scrub(self, text: str) -> ScrubResult: ...  # ``text`` with each analyzed span replaced

    def scrub_many(self, texts: Iterable[str]) -> list[ScrubResult]:
        """The same as ``scrub`` on each text; faster on many texts at once (NER runs in batches)."""
        ...


class IngestContext(Protocol):
    """What ingestion needs from the process that runs it (the composition root provides it).

    A Protocol rather than the composition root itself, so ingest/ never imports the service layer.
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def vault(self) -> Vault: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def scrubber(self) -> Scrubber: ...

    def scrubber_for(self, policy: str) -> Scrubber:
        """The scrubber for a collection's PII policy (app.accounts.PII_POLICIES); "all" is ``scrubber``."""
        ...
