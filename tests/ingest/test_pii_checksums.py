"""Check characters: valid identifiers pass, a changed check character fails."""

from __future__ import annotations

import pytest

from ingest.pii.checksums import (
    cn_id_check_char,
    cn_id_valid,
    iban_valid,
    luhn_complete,
    luhn_valid,
    uscc_check_char,
    uscc_valid,
)


def _with_wrong_last(value: str, alphabet: str) -> str:
    return value[:-1] + next(c for c in alphabet if c != value[-1])


@pytest.mark.parametrize("first17", ["11010519491231002", "44030619900307123", "32010219851120456"])
def test_cn_id_valid_and_wrong_check_char(first17: str) -> None:
    good = first17 + cn_id_check_char(first17)
    assert cn_id_valid(good)
    assert cn_id_valid(good.lower())
    assert not cn_id_valid(_with_wrong_last(good, "0123456789X"))


def test_cn_id_rejects_impossible_dates_and_shapes() -> None:
    for first17 in ("11010519491331002", "11010519490230002", "11010530000101002"):  # month 13, Feb 30, year 3000
        assert not cn_id_valid(first17 + cn_id_check_char(first17))
    assert not cn_id_valid("11010519491231002")  # 17 characters
    assert not cn_id_valid("01010519491231002" + cn_id_check_char("01010519491231002"))  # region cannot start 0


def test_uscc_valid_and_wrong_check_char() -> None:
    first17 = "91350100M000100Y4"
    good = first17 + uscc_check_char(first17)
    assert uscc_valid(good)
    assert not uscc_valid(_with_wrong_last(good, "0123456789ABCDEFGHJKLMNPQRTUWXY"))
    assert not uscc_valid(good[:-1] + "I")  # not in the GB 32100 alphabet


def test_known_uscc() -> None:
    # A widely cited example code from GB 32100 explanations; its check character is not computed here.
    assert uscc_valid("91350100M000100Y43")


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    card = luhn_complete("622202100012345")
    assert luhn_valid(card) and len(card) == 16


def test_iban() -> None:
    assert iban_valid("GB82WEST12345698765432")
    assert iban_valid("gb82 west 1234 5698 7654 32")
    assert not iban_valid("GB82WEST12345698765433")
