"""The Scrubber contract: analyze reports valid spans of declared types, scrub removes exactly those spans,
and the batch forms (what ingestion and `kb eval pii` call) agree with the single ones."""

from __future__ import annotations

import pytest

from ingest.types import PiiEntity, Scrubber, ScrubResult

CLEAN = [
    "The committee meets on the third floor after lunch.",
    "Revenue grew by 8 percent in the second quarter.",
    "差旅住宿标准按照城市等级执行。",
]
# Personal data of every type kb knows (ingest.pii.entities.ALL_ENTITIES), with valid check digits
# (GB 11643 ID, Luhn card, GB 32100 credit code, IBAN).
PERSONAL = [
    "Please write to anna.schmidt@example.org or call 13812345678 before Friday.",
    "客户身份证号 11010519491231002X，银行卡 6222020200112233446，请核对。",
    "Server 192.168.10.24 sends the report to ops@example.com every night.",
    "统一社会信用代码：91110105MA01ABCD26，护照号码：E12345678，签发地北京。",
    "Wire it to IBAN DE89 3704 0044 0532 0130 00; her SSN is 536-90-4399.",
    "Mrs. Karen Thorkildsen Suite 680, 4022 Oakridge Lane, Dallas",
    "The handbook is at https://intranet.example.com/hr and the office moved to Berlin.",
]


class ScrubberContract:
    """Mixin: a concrete class defines ``make()``. Every type the scrubber declares in ``entities`` must
    be found in ``PERSONAL`` (what `kb eval pii` scores it on), and nothing else."""

    def make(self) -> Scrubber:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def scrubber(cls) -> Scrubber:
        return cls().make()

    def test_is_a_scrubber(self, scrubber: Scrubber) -> None:
        assert isinstance(scrubber, Scrubber)
        assert isinstance(scrubber.entities, tuple) and all(isinstance(e, str) and e for e in scrubber.entities)
        assert len(set(scrubber.entities)) == len(scrubber.entities)

    @pytest.mark.parametrize("text", PERSONAL + CLEAN)
    def test_analyze_reports_valid_spans_of_declared_types(self, scrubber: Scrubber, text: str) -> None:
        found = scrubber.analyze(text)
        assert isinstance(found, list) and all(isinstance(e, PiiEntity) for e in found)
        for e in found:
            assert type(e.start) is int and type(e.end) is int and 0 <= e.start < e.end <= len(text), e
            assert text[e.start:e.end].strip(), e
            assert e.type in scrubber.entities, e
            assert isinstance(e.score, float) and 0.0 <= e.score <= 1.0, e

    def test_finds_every_declared_type(self, scrubber: Scrubber) -> None:
        found = {e.type for text in PERSONAL for e in scrubber.analyze(text)}
        assert found == set(scrubber.entities), f"missed {sorted(set(scrubber.entities) - found)}"

    def test_clean_text_is_left_alone(self, scrubber: Scrubber) -> None:
        for text in CLEAN:
            assert scrubber.analyze(text) == [], text
            assert scrubber.scrub(text) == ScrubResult(text, [])
        assert scrubber.analyze("") == [] and scrubber.scrub("") == ScrubResult("", [])

    @pytest.mark.parametrize("text", PERSONAL)
    def test_scrub_removes_what_analyze_finds(self, scrubber: Scrubber, text: str) -> None:
        found = scrubber.analyze(text)
        result = scrubber.scrub(text)
        assert isinstance(result, ScrubResult) and isinstance(result.text, str)
        assert result.entities == found  # spans refer to the original text
        for e in found:
            assert text[e.start:e.end] not in result.text, e
        if not found:
            assert result.text == text
        else:  # the text around the spans stays as it was
            assert result.text.startswith(text[: min(e.start for e in found)])
            assert result.text.endswith(text[max(e.end for e in found):])

    def test_batches_equal_one_at_a_time(self, scrubber: Scrubber) -> None:
        texts = [*PERSONAL, *CLEAN, ""]
        singles = [scrubber.scrub(t) for t in texts]
        assert scrubber.scrub_many(texts) == singles
        assert scrubber.scrub_many(iter(texts)) == singles  # any iterable, in order
        assert scrubber.analyze_many(iter(texts)) == [r.entities for r in singles]
        assert scrubber.scrub_many([]) == [] and scrubber.analyze_many([]) == []
