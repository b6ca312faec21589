"""A regex recognizer with character-window context, usable by Presidio's AnalyzerEngine.

Presidio's own context enhancer works on spaCy tokens, which the English tokenizer cannot cut out of
Chinese text (``身份证号码`` would need to be a token). Our recognizers therefore look at the raw
characters just before (and after) a match, which works the same for Chinese and English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from presidio_analyzer import LocalRecognizer, RecognizerResult


@dataclass(frozen=True)
class Rule:
    """One pattern of a recognizer.

    score: the score without supporting context; context_score: with a context word nearby.
    validate: returns False to drop a match (wrong check digit, impossible date, ...).
    group: the regex group that is the entity (context words may be part of the pattern).
    """

    name: str
    regex: str
    score: float
    context_score: float
    validate: Callable[[str], bool] | None = None
    group: int = 0
    flags: int = re.IGNORECASE


@dataclass
class ContextWords:
    before: Sequence[str] = ()
    after: Sequence[str] = ()
    negative: Sequence[str] = ()  # e.g. "order number": a match near one is not this entity
    window_before: int = 24
    window_after: int = 12
    _compiled: dict[str, re.Pattern[str] | None] = field(default_factory=dict, repr=False)

    def _pattern(self, key: str, words: Sequence[str]) -> re.Pattern[str] | None:
        if key not in self._compiled:
            # ASCII words need word boundaries ("ip" must not hit "ship"); CJK words have none.
            parts = [
                rf"(?<![a-z]){re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w) for w in words
            ]
            self._compiled[key] = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        return self._compiled[key]

    def near(self, text: str, start: int, end: int) -> bool:
        pb = self._pattern("before", self.before)
        if pb and pb.search(text, max(0, start - self.window_before), start):
            return True
        pa = self._pattern("after", self.after)
        return bool(pa and pa.search(text[end : end + self.window_after]))

    def negated(self, text: str, start: int) -> bool:
        pn = self._pattern("negative", self.negative)
        return bool(pn and pn.search(text, max(0, start - self.window_before), start))


class WindowContextRecognizer(LocalRecognizer):
    """Regex rules + validation + character-window context; one entity type per recognizer."""

    def __init__(self, entity: str, rules: Sequence[Rule], context: ContextWords, name: str | None = None):
        self.rules = list(rules)
        self.window_context = context
        self._compiled_rules = [(r, re.compile(r.regex, r.flags)) for r in self.rules]
        super().__init__(supported_entities=[entity], name=name or f"kb_{entity.lower()}")
        self.entity = entity

    def load(self) -> None:  # nothing to load: patterns compile in __init__
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        if entities and self.entity not in entities:
            return []
        out: dict[tuple[int, int], RecognizerResult] = {}
        ctx = self.window_context
        for rule, rx in self._compiled_rules:
            for m in rx.finditer(text):
                start, end = m.span(rule.group)
                value = m.group(rule.group)
                if start == end or (rule.validate is not None and not rule.validate(value)):
                    continue
                if ctx.negated(text, start):
                    continue
                score = rule.context_score if ctx.near(text, start, end) else rule.score
                prev = out.get((start, end))
                if prev is None or prev.score < score:
                    out[(start, end)] = RecognizerResult(self.entity, start, end, score)
        return list(out.values())
