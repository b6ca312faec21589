"""The name lexicon and overlap resolution on their own (no spaCy model: fast)."""

from __future__ import annotations

import pytest

from ingest.pii.names_lexicon import find_names, lexicon
from ingest.pii.redact import redact, resolve_overlaps
from ingest.types import PiiEntity


def _names(text: str) -> list[str]:
    return [text[c.start : c.end] for c in find_names(text)]


def test_lexicon_file_is_well_formed() -> None:
    table = lexicon()
    assert len(table) > 50_000
    assert all(name.isascii() and name.islower() and set(flags) <= set("fcswp") for name, flags in table.items())
    assert "f" in table["kevin"] and "s" in table["johnson"] and "w" in table["will"] and "p" in table["sydney"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kevin is a very sympathetic person.", ["Kevin"]),
        ("I want to add Latoya Shimasaki as a beneficiary.", ["Latoya Shimasaki"]),
        ("Ask Mary McDonald or Sean O'Neil.", ["Mary McDonald", "Sean O'Neil"]),
        ("The founders were Eklund, Warren and Bailey.", ["Eklund", "Warren", "Bailey"]),
        ("they had 3: natalina, thomas and omar", ["natalina", "thomas", "omar"]),
        ("Kowalski was there. Don't go.", []),  # a surname alone needs support
        ("Will this work in May?", []),  # ordinary words and months
        ("Parkinson's disease and Kaplan-Meier curves", []),
        ("Candida albicans in HeLa cells; Na+ and Pol IV", []),
        ("She works at Jackson Hospital and Morgan Stanley Bank.", []),
    ],
)
def test_find_names(text: str, expected: list[str]) -> None:
    assert _names(text) == expected


def test_overlap_keeps_the_part_outside_the_winner() -> None:
    text = "Mrs. Karen Thorkildsen Suite 680, 4022 Oakridge Lane"
    person = PiiEntity("PERSON", 5, text.index(" 680"), 0.85)  # NER's "Karen Thorkildsen Suite"
    address = PiiEntity("ADDRESS", text.index("Suite"), len(text), 0.7)
    kept = resolve_overlaps([person, address], text)
    assert [(e.type, text[e.start : e.end]) for e in kept] == [
        ("PERSON", "Karen Thorkildsen"), ("ADDRESS", "Suite 680, 4022 Oakridge Lane"),
    ]
    assert redact(text, kept) == "Mrs. <PERSON> <ADDRESS>"
    inner = PiiEntity("PHONE", 10, 14, 0.9)
    assert resolve_overlaps([PiiEntity("PERSON", 5, 20, 0.6), inner], text) == [inner]
