"""PII scrubbing: ``build_scrubber(settings.pii)`` gives the Scrubber that ingestion runs before chunking.

Building is cheap; Presidio and spaCy load on the first call, once per process.
"""

from __future__ import annotations

from collections.abc import Callable

from app.errors import ConfigError
from app.settings import PiiSettings
from ingest.types import Scrubber


def _presidio(settings: PiiSettings) -> Scrubber:
    from ingest.pii.presidio_scrubber import PresidioScrubber

    return PresidioScrubber(
        entities=settings.entities,
        threshold=settings.threshold,
        scrub_names=settings.scrub_names,
        spacy_model=settings.spacy_model,
        name_ner=settings.name_ner,
        chinese_ner=settings.chinese_ner,
    )


def _passthrough(settings: PiiSettings) -> Scrubber:
    from ingest.pii.passthrough import PassthroughScrubber

    return PassthroughScrubber()


SCRUBBERS: dict[str, Callable[[PiiSettings], Scrubber]] = {"presidio": _presidio, "passthrough": _passthrough}


def for_policy(settings: PiiSettings, policy: str) -> PiiSettings:
    """The PII settings a collection with ``policy`` is scrubbed with (app.accounts.PII_POLICIES): "all" is
    ``settings`` as they are, "identifiers" the same less names and addresses."""
    from app.accounts import check_pii_policy
    from ingest.pii.entities import PEOPLE_AND_PLACES, resolve_entities

    if check_pii_policy(policy) == "all":
        return settings
    kept = [e for e in resolve_entities(settings.entities, settings.scrub_names) if e not in PEOPLE_AND_PLACES]
    return settings.model_copy(update={"entities": kept, "scrub_names": False})


def build_scrubber(settings: PiiSettings) -> Scrubber:
    name = "presidio" if settings.enabled else "passthrough"
    try:
        factory = SCRUBBERS[name]
    except KeyError:  # pragma: no cover - the registry and the switch above are edited together
        raise ConfigError(f"No PII scrubber named {name!r}; known: {', '.join(SCRUBBERS)}.") from None
    return factory(settings)


__all__ = ["SCRUBBERS", "build_scrubber", "for_policy"]
