"""The Scrubber used when PII scrubbing is off: finds nothing, changes nothing."""

from __future__ import annotations

from ingest.types import PiiEntity, ScrubResult


class PassthroughScrubber:
    def analyze(self, text: str) -> list[PiiEntity]:
        return []

    def scrub(self, text: str) -> ScrubResult:
        return ScrubResult(text, [])
