"""The Scrubber used when PII scrubbing is off: finds nothing, changes nothing."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.types import PiiEntity, ScrubResult


class PassthroughScrubber:
    entities: tuple[str, ...] = ()

    def analyze(self, text: str) -> list[PiiEntity]:
        return []

    def analyze_many(self, texts: Iterable[str]) -> list[list[PiiEntity]]:
        return [[] for _ in texts]

    def scrub(self, text: str) -> ScrubResult:
        return ScrubResult(text, [])

    def scrub_many(self, texts: Iterable[str]) -> list[ScrubResult]:
        return [ScrubResult(t, []) for t in texts]
