"""Our entity type names, the placeholders they become and the default set that is scrubbed."""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import ConfigError

# Everything kb can recognize.
ALL_ENTITIES = (
    "CN_ID", "PHONE", "BANK_CARD", "CN_USCC", "PASSPORT", "EMAIL", "IP_ADDRESS", "IBAN", "US_SSN",
    "PERSON", "ADDRESS", "LOCATION", "URL",
)
# Scrubbed unless settings say otherwise. LOCATION (a country or city on its own) and URL are not
# personal data in most documents and scrubbing them costs retrieval quality; opt in by naming them.
DEFAULT_ENTITIES = tuple(e for e in ALL_ENTITIES if e not in ("LOCATION", "URL"))
# What a collection whose policy is "identifiers" keeps: who and where (public documents name people
# and places, and their answers are often one).
PEOPLE_AND_PLACES = frozenset({"PERSON", "ADDRESS", "LOCATION"})
# Types found by spaCy NER (the slow part); without them the NER model is never loaded.
NER_ENTITIES = frozenset({"PERSON", "LOCATION"})


def placeholder(entity_type: str) -> str:
    return f"<{entity_type}>"


def resolve_entities(entities: Sequence[str] | None, scrub_names: bool) -> tuple[str, ...]:
    chosen = tuple(DEFAULT_ENTITIES if entities is None else (e.strip().upper() for e in entities))
    unknown = sorted(set(chosen) - set(ALL_ENTITIES))
    if unknown:
        raise ConfigError(
            f"Unknown PII entity type(s) {', '.join(unknown)} in KB_PII__ENTITIES. "
            f"Known types: {', '.join(ALL_ENTITIES)}."
        )
    if not scrub_names:
        chosen = tuple(e for e in chosen if e != "PERSON")
    return chosen
