"""File names are text too: identifiers in them are scrubbed before a name is stored or shown.

Only the pattern recognizers run here (ID numbers, phones, cards, e-mail, ...): names of people in file
names are left alone, because a lexicon on bare words ("Hello World.txt") guesses badly. Each identifier
becomes a typed placeholder with a short keyed digest of the original, so two files that differ only
in the identifier stay two documents and the same file keeps the same name on every upload.
Bidirectional-override characters are removed, so no name can spoof its extension ("txt.exe").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_SEPARATORS = re.compile(r"[_\-.+=~,;()\[\]{}/\\!]")  # word separators in names, never inside an identifier
_MIN_SCORE = 0.4


@functools.cache
def _recognizers():
    from ingest.pii import identifiers as ids

    return [ids.cn_id_recognizer(), ids.cn_mobile_recognizer(), ids.cn_landline_recognizer(),
            ids.intl_phone_recognizer(), ids.bank_card_recognizer(), ids.uscc_recognizer(),
            ids.passport_recognizer(), ids.email_recognizer(), ids.iban_recognizer(), ids.ip_recognizer(),
            ids.us_ssn_recognizer()]


def display_safe(name: str) -> str:
    return _BIDI.sub("", name)


def scrub_file_name(name: str, digest: Callable[[str], str]) -> tuple[str, int]:
    """``name`` with each identifier replaced by ``<TYPE~xxxxxx>``; also the number replaced.

    ``digest`` is a keyed hash (the vault's HMAC): without the key nobody can test guesses against it.
    """
    name = display_safe(name)
    # "contract_11010519491231002X.txt": underscores are word characters, so identifier patterns with
    # word boundaries would not see the number; spaces in their place keep every offset.
    probe = _SEPARATORS.sub(" ", name)
    if "@" in name:
        probe = name.replace("/", " ")  # e-mail addresses keep their dots and dashes
    spans = []
    for rec in _recognizers():
        spans += [(r.start, r.end, r.entity_type) for r in rec.analyze(probe, []) if r.score >= _MIN_SCORE]
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    out, last, n = [], 0, 0
    for start, end, kind in spans:
        if start < last:
            continue  # overlaps a longer identifier already replaced
        out += [name[last:start], f"<{kind}~{digest(name[start:end])[:6]}>"]
        last, n = end, n + 1
    out.append(name[last:])
    return "".join(out), n
