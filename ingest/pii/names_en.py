"""English person names from explicit cues spaCy's small model often misses: "Name: ...",
"my name is ...", honorifics (Mr./Dr. ...), greetings and reporting verbs."""

from __future__ import annotations

import re

from ingest.pii.names_lexicon import not_addressee
from ingest.pii.pattern_base import ContextWords, Rule, WindowContextRecognizer

_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’-]+"
_ANY = r"[^\W\d_][\w'’-]+"
_CAP_NAME = rf"{_CAP}(?:\s+(?:van der |van |de |da |von |le )?{_CAP}){{0,2}}"
_ANY_NAME = rf"{_ANY}(?:[ \t]+{_ANY}){{0,2}}"
_LINE_NAME = rf"{_CAP}(?:[ \t]+{_CAP}){{0,2}}"  # a name on one line


# Sign-off lines after which a short capitalised line is the sender's name ("Best,\n\nMallori").
_SIGN_OFF = (
    r"(?:best|best regards|kind regards|warm regards|warmest regards|regards|many thanks|thanks|thank you"
    r"|cheers|sincerely|yours sincerely|yours truly|yours|all the best|best wishes|cordially|respectfully)"
)


def en_name_recognizer() -> WindowContextRecognizer:
    rules = [
        # "Name: katelyn villareal" (a form field: any case)
        Rule("name_field", rf"(?im)^\W*(?:full\s+)?name\s*:\s*({_ANY_NAME})[ \t]*$", 0.85, 0.85, group=1),
        Rule("my_name", rf"(?i:\bmy name is|\bi am called|\bcall me|\bthis is)\s+({_CAP_NAME})", 0.7, 0.7,
             group=1, flags=0),
        Rule("my_name_lower", rf"(?i:\bmy name is|\bcall me)\s+({_ANY_NAME})(?=[.,!?]|$)", 0.7, 0.7,
             group=1, flags=re.IGNORECASE),
        # "Mr. Ryan Ziherl", "Dr. Katie Giles" (the honorific belongs to the name span)
        Rule("honorific", rf"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Madam)\.?\s+{_CAP_NAME}", 0.8, 0.8, flags=0),
        # "Dear Anna," / "Hi Tom!"
        Rule("greeting", rf"(?i:\bdear|\bhi|\bhello|\bhey)\s+({_CAP_NAME})(?=\s*[,!:])", 0.6, 0.6, group=1,
             flags=0, validate=not_addressee),
        # "Best,\n\nMallori" / "Regards,\nAnna Berg": a signature line under a sign-off
        Rule("signature", rf"(?im:^[ \t]*{_SIGN_OFF}[ \t]*[,.!]?[ \t]*\n(?:[ \t]*\n)?[ \t]*)({_LINE_NAME})[ \t]*$",
             0.65, 0.65, group=1, flags=re.MULTILINE, validate=not_addressee),
        # '..., says Yudina.' / 'Lasse shouted at Sara'
        Rule("says", rf"\b(?:says|said|asked|told|replied|wrote|shouted at)\s+({_CAP_NAME})\b", 0.55, 0.55,
             group=1, flags=0),
        Rule("said_by", rf"(?<![\w.])({_CAP_NAME})\s+(?:says|said|asked|replied|wrote|shouted)\b", 0.5, 0.5,
             group=1, flags=0),
    ]
    return WindowContextRecognizer("PERSON", rules, ContextWords(), name="kb_en_name")
