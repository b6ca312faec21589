"""Both scrubbers in ingest.pii.SCRUBBERS run the Scrubber contract."""

from __future__ import annotations

import pytest

from app.settings import PiiSettings
from ingest.pii import SCRUBBERS, build_scrubber
from ingest.pii.entities import ALL_ENTITIES
from ingest.pii.passthrough import PassthroughScrubber
from ingest.pii.presidio_scrubber import PresidioScrubber
from ingest.types import Scrubber
from tests.contracts.scrubber import ScrubberContract


@pytest.mark.slow
class TestPresidioScrubber(ScrubberContract):
    def make(self) -> Scrubber:
        scrubber = build_scrubber(PiiSettings())  # what ingestion runs: the default types, names included
        assert isinstance(scrubber, PresidioScrubber)
        return scrubber


@pytest.mark.slow
class TestPresidioScrubberEveryType(ScrubberContract):
    """With LOCATION and URL too (opt-in types): NER then reads every capitalised sentence."""

    def make(self) -> Scrubber:
        scrubber = build_scrubber(PiiSettings(entities=list(ALL_ENTITIES)))
        assert set(scrubber.entities) == set(ALL_ENTITIES)
        return scrubber


class TestPassthroughScrubber(ScrubberContract):
    def make(self) -> Scrubber:
        scrubber = build_scrubber(PiiSettings(enabled=False))
        assert isinstance(scrubber, PassthroughScrubber)
        return scrubber


def test_every_registered_scrubber_runs_the_contract() -> None:
    covered = {"presidio": TestPresidioScrubber, "passthrough": TestPassthroughScrubber}
    assert set(SCRUBBERS) == set(covered)
