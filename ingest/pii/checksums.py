"""Check characters of identifiers: a match with a wrong check digit is not that identifier."""

from __future__ import annotations

from datetime import date

# GB 11643-1999: weights 2^(17-i) mod 11 and the MOD 11-2 check character table.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# GB 32100-2015: 31-character alphabet without I, O, Z, S, V.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def cn_id_check_char(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def cn_id_valid(value: str) -> bool:
    """18-character mainland resident ID: digits, a real birth date and the MOD 11-2 check character."""
    v = value.upper()
    if len(v) != 18 or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        return False
    if v[0] not in "123456789":
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > date.today():
        return False
    return cn_id_check_char(v[:17]) == v[17]


def uscc_check_char(first17: str) -> str:
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_valid(value: str) -> bool:
    """18-character unified social credit code (GB 32100) with its check character."""
    v = value.upper()
    if len(v) != 18 or any(c not in _USCC_ALPHABET for c in v):
        return False
    # Registration authority (1st) and organisation category (2nd) codes are drawn from small sets.
    if v[0] not in "123456789ANY" or not v[2:8].isdigit():
        return False
    return uscc_check_char(v[:17]) == v[17]


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit() or len(digits) < 12:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(prefix: str) -> str:
    """The digit that makes ``prefix + digit`` pass Luhn (used to build valid test numbers)."""
    for d in "0123456789":
        if luhn_valid(prefix + d):
            return prefix + d
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def iban_valid(value: str) -> bool:
    """ISO 13616 mod-97 check (any case, spaces ignored)."""
    v = value.replace(" ", "").upper()
    if not 15 <= len(v) <= 34 or not v[:2].isalpha() or not v[2:4].isdigit() or not v.isalnum():
        return False
    rearranged = v[4:] + v[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
