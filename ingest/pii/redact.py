"""Turn detected spans into typed placeholders: "call 13812345678" -> "call <PHONE>"."""

from __future__ import annotations

from ingest.pii.entities import placeholder
from ingest.types import PiiEntity

_ADDRESS_BONUS = 0.3


def resolve_overlaps(entities: list[PiiEntity], text: str | None = None) -> list[PiiEntity]:
    """Keep one entity per stretch of text: the highest score wins, then the longer span.

    An address block contains names of streets and towns that NER calls PERSON or LOCATION; the
    address pattern is the better judge there, so it gets a head start that beats NER's 0.85. The
    loser keeps the part of it outside the winner (``_outside``)."""
    kept: list[PiiEntity] = []

    def rank(x: PiiEntity) -> tuple[float, int, int]:
        return (-(x.score + (_ADDRESS_BONUS if x.type == "ADDRESS" else 0.0)), -(x.end - x.start), x.start)

    for e in sorted(entities, key=rank):
        rest = _outside(e, kept, text)
        if rest is not None:
            kept.append(rest)
    return sorted(kept, key=lambda x: x.start)


def _outside(e: PiiEntity, kept: list[PiiEntity], text: str | None) -> PiiEntity | None:
    """``e`` cut back to the side that no kept entity covers: NER's "Karen Thorkildsen Suite" next to the
    address "Suite 680 ..." still scrubs the name. None when nothing of it is left."""
    start, end = e.start, e.end
    for k in kept:
        if k.end <= start or k.start >= end:
            continue
        if k.start <= start and k.end >= end:
            return None
        if k.start > start and k.end < end:
            return None  # a kept entity inside this one: keep the inner, more certain one only
        if k.start <= start:
            start = k.end
        else:
            end = k.start
    if start == e.start and end == e.end:
        return e
    if text is not None:  # no spaces or commas left dangling at the cut
        while start < end and not text[start].isalnum():
            start += 1
        while end > start and not text[end - 1].isalnum():
            end -= 1
    if end - start < 2:
        return None
    return PiiEntity(e.type, start, end, e.score)


def redact(text: str, entities: list[PiiEntity]) -> str:
    parts, pos = [], 0
    for e in sorted(entities, key=lambda x: x.start):
        if e.start < pos:
            continue
        parts += [text[pos : e.start], placeholder(e.type)]
        pos = e.end
    parts.append(text[pos:])
    return "".join(parts)
