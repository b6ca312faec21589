"""Contract of the generation stage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass
class ChatMessage:
    role: str  # system | user | assistant
    content: str


class Generator(Protocol):
    model_name: str
    model_sha256: str | None

    def stream(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def context_window(self) -> int: ...
