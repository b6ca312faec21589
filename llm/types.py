"""Contract of the generation stage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@runtime_checkable
class Generator(Protocol):
    model_name: str
    model_sha256: str | None

    def stream(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]:
        """Answer deltas. kb's backends return an ``llm.repetition.AnswerStream``: loops are cut inside it
        and its ``finish_reason`` ("stop", "length", "repetition") is set once iteration ends."""
        ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def context_window(self) -> int: ...

    @property
    def think_prefilled(self) -> bool:
        """The prompt already opens a ``<think>`` block (DeepSeek-R1 style templates), so the output
        starts inside reasoning without an opening tag (``llm.reasoning.ReasoningSplitter``)."""
        ...


@dataclass(frozen=True)
class SourcePassage:
    """One retrieved passage as the prompt shows it: numbered [n] so the answer can cite it."""

    n: int
    text: str
    title: str | None = None  # document title or file name
    source: str | None = None  # file name or path when it differs from the title
    page: int | None = None
    sheet: str | None = None
    heading: str | None = None

    @property
    def location(self) -> str:
        """Human-readable position inside the document, e.g. 'page 3, Budget'."""
        parts: list[str] = []
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.sheet:
            parts.append(f"sheet {self.sheet}")
        if self.heading:
            parts.append(self.heading)
        return ", ".join(parts)
