"""Turn detected spans into typed placeholders: "call 13812345678" -> "call <PHONE>"."""

from __future__ import annotations

from ingest.pii.entities import placeholder
from ingest.types import PiiEntity

_ADDRESS_BONUS = 0.15


def resolve_overlaps(entities: list[PiiEntity]) -> list[PiiEntity]:
    """Keep one entity per stretch of text: the highest score wins, then the longer span.

    An address block contains names of streets and towns that NER calls PERSON or LOCATION; the
    address pattern is the better judge there, so it gets a head start."""
    kept: list[PiiEntity] = []

    def rank(x: PiiEntity) -> tuple[float, int, int]:
        return (-(x.score + (_ADDRESS_BONUS if x.type == "ADDRESS" else 0.0)), -(x.end - x.start), x.start)

    for e in sorted(entities, key=rank):
        if all(e.end <= k.start or e.start >= k.end for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda x: x.start)


def redact(text: str, entities: list[PiiEntity]) -> str:
    parts, pos = [], 0
    for e in sorted(entities, key=lambda x: x.start):
        if e.start < pos:
            continue
        parts += [text[pos : e.start], placeholder(e.type)]
        pos = e.end
    parts.append(text[pos:])
    return "".join(parts)
