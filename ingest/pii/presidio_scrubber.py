"""The default Scrubber: our Presidio recognizers (structured identifiers with checksums and
character-window context, addresses, Chinese and English names from cues and a name lexicon) and spaCy
NER for the English names the lexicon does not know; typed placeholders keep scrubbed text useful for
retrieval.

The recognizers are Presidio ``EntityRecognizer``s, but they run directly rather than through
Presidio's AnalyzerEngine: the engine needs a spaCy Doc of every text for its token-based context
enhancer, which our character-window context makes unnecessary, and that tokenization cost more than
all our patterns together.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

from ingest.pii.entities import NER_ENTITIES, resolve_entities
from ingest.pii.names_lexicon import DEMONYMS, PLACE_PREFIXES, fold
from ingest.pii.redact import redact, resolve_overlaps
from ingest.types import PiiEntity, ScrubResult

# spaCy labels -> our types (everything else the model emits is ignored).
_SPACY_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
NER_SCORE = 0.85  # what Presidio's SpacyRecognizer gives a spaCy entity
# Lexicon candidates this weak still send their sentence to NER (which may confirm them).
_NER_CUE_SCORE = 0.4
NER_MODES = ("cued", "capitalized", "off")


class PresidioScrubber:
    """Thread-safe after the first call; recognizers and the spaCy model load on first use, once.

    name_ner: where spaCy NER reads: "cued" only sentences where the name lexicon or a cue saw a
    possible name, "capitalized" every sentence with a capitalised word inside, "off" never.
    chinese_ner: run the Chinese CRF (cn_ner) on sentences with Han characters."""

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        threshold: float = 0.5,
        scrub_names: bool = True,
        spacy_model: str = "en_core_web_sm",
        name_ner: str = "cued",
        chinese_ner: bool = True,
    ):
        from app.errors import ConfigError

        if name_ner not in NER_MODES:
            raise ConfigError(f"Unknown KB_PII__NAME_NER {name_ner!r}: use one of {', '.join(NER_MODES)}.")
        self.entities = resolve_entities(entities, scrub_names)
        self.threshold = threshold
        self.spacy_model = spacy_model
        wants_ner = bool(NER_ENTITIES & set(self.entities))
        # LOCATION comes from NER alone, so it needs NER on every capitalised sentence.
        self.name_ner = "capitalized" if "LOCATION" in self.entities and wants_ner else name_ner
        self.use_ner = wants_ner and self.name_ner != "off"
        self.chinese_ner = chinese_ner
        self._recognizers = None
        self._lock = threading.Lock()

    # -- Scrubber protocol
    def analyze(self, text: str) -> list[PiiEntity]:
        return self.analyze_many([text])[0]

    def scrub(self, text: str) -> ScrubResult:
        entities = self.analyze(text)
        return ScrubResult(redact(text, entities), entities)

    # -- batch helpers (spaCy is faster on batches)
    def analyze_many(self, texts: Iterable[str]) -> list[list[PiiEntity]]:
        texts = list(texts)
        recognizers, nlp = self._load()
        wanted = list(self.entities)
        names = "PERSON" in self.entities
        chinese = self.chinese_ner and bool({"PERSON", "ADDRESS"} & set(self.entities))
        found: list[list[PiiEntity]] = []
        cues: list[list[int]] = []
        for text in texts:
            entities: list[PiiEntity] = []
            positions: list[int] = []
            if text.strip():
                for rec in recognizers:
                    for r in rec.analyze(text, wanted, None):
                        if r.score >= self.threshold:
                            entities.append(PiiEntity(r.entity_type, r.start, r.end, round(r.score, 3)))
                            if r.entity_type == "PERSON":
                                positions.append(r.start)
                if chinese and _HAN.search(text):
                    entities += [e for e in _chinese_spans(text, self.entities) if e.score >= self.threshold]
                if names:
                    from ingest.pii.names_lexicon import find_names

                    for c in find_names(text, min_score=_NER_CUE_SCORE):
                        positions.append(c.start)
                        if c.score >= self.threshold:
                            entities.append(PiiEntity("PERSON", c.start, c.end, round(c.score, 3)))
            found.append(entities)
            cues.append(positions)
        if nlp is not None:
            self._add_ner(nlp, texts, cues, found)
        return [
            resolve_overlaps([e for e in f if not _negated(t, e) and _plausible(t, e)], t)
            for t, f in zip(texts, found, strict=True)
        ]

    def scrub_many(self, texts: Iterable[str]) -> list[ScrubResult]:
        texts = list(texts)
        return [ScrubResult(redact(t, e), e) for t, e in zip(texts, self.analyze_many(texts), strict=True)]

    def _add_ner(self, nlp, texts: list[str], cues: list[list[int]], found: list[list[PiiEntity]]) -> None:
        from ingest.pii.nlp import candidate_segments, ner_spans, segments_around

        if self.name_ner == "capitalized":
            segments = [candidate_segments(t) for t in texts]
        else:
            segments = [segments_around(t, p) for t, p in zip(texts, cues, strict=True)]
        if NER_SCORE < self.threshold:
            return
        for text, entities, spans in zip(texts, found, ner_spans(nlp, texts, segments), strict=True):
            for label, start, end in spans:
                etype = _SPACY_LABELS.get(label)
                if etype in self.entities and not _HAN.search(text, start, end):  # English NER cannot read Han
                    entities.append(PiiEntity(etype, start, end, NER_SCORE))

    def _load(self):
        if self._recognizers is None:
            with self._lock:
                if self._recognizers is None:
                    self._nlp = load_ner(self.spacy_model) if self.use_ner else None
                    wanted = set(self.entities)
                    # The CRF reads Chinese names with or without cues; the cue rules alone add mostly noise
                    # next to it ("司总" from "公司总经理": precision 0.47 on CLUENER), so they run only without it.
                    self._recognizers = [r for r in _all_recognizers() if wanted & set(r.supported_entities)
                                         and not (self.chinese_ner and r.name == "kb_cn_name")]
        return self._recognizers, self._nlp


_HAN = re.compile(r"[\u3400-\u9fff]")
def _chinese_spans(text: str, wanted: Sequence[str]) -> list[PiiEntity]:
    """Names and postal addresses the Chinese CRF finds (no cue needed). A span's score is 0.5 plus half
    its mean probability, so the default threshold keeps every span the CRF's own cut-off chose and a
    higher KB_PII__THRESHOLD keeps only the surer ones."""
    from ingest.pii.cn_ner import find, is_postal

    out = []
    for span in find(text):
        if span.type not in wanted:
            continue
        if span.type == "ADDRESS" and not is_postal(text[span.start : span.end]):
            continue
        out.append(PiiEntity(span.type, span.start, span.end, round(0.5 + span.score / 2, 3)))
    return out


# Presidio's built-in card/SSN recognizers do not know our negative words ("订单号", "order number").
_NUMBER_TYPES = frozenset({"BANK_CARD", "PHONE", "US_SSN"})
_negative_context = None


def _negated(text: str, entity: PiiEntity) -> bool:
    global _negative_context
    if entity.type not in _NUMBER_TYPES:
        return False
    if _negative_context is None:
        from ingest.pii.identifiers import NEGATIVE_NUMBER_WORDS
        from ingest.pii.pattern_base import ContextWords

        _negative_context = ContextWords(negative=NEGATIVE_NUMBER_WORDS)
    return _negative_context.negated(text, entity.start)


def _plausible(text: str, entity: PiiEntity) -> bool:
    """The small English model calls gene and chemical names PERSON ("TRF2", "SiO2", "microm2")."""
    if entity.type != "PERSON":
        return True
    value = text[entity.start : entity.end]
    if any(c.isdigit() for c in value) or (value.isupper() and len(value) <= 5):
        return False
    if not any(c.isupper() for c in text):
        return True  # lower-case chat text: capitals tell nothing
    # In text that uses capitals every word of a name has one ("tyrosine kinase", "Aurora B kinase" are
    # not people) and a name does not end in a variant code ("Pol IV", "Aurora B").
    words = value.split()
    if _after_place_prefix(text, entity.start) or (len(words) > 1 and fold(words[0]) in PLACE_PREFIXES):
        return False  # "San Francisco", "Los Angeles", "New York": places
    if len(words) == 1 and fold(words[0]) in DEMONYMS:
        return False  # "Thai food"
    if any(w[0].islower() and w not in _PARTICLES for w in words):
        return False
    return not (len(words) > 1 and _CODE.fullmatch(words[-1]))


_PREV_WORD = re.compile(r"([A-Za-zÀ-ÿ]+)\.?[ \t]+$")


def _after_place_prefix(text: str, start: int) -> bool:
    m = _PREV_WORD.search(text, max(0, start - 12), start)
    return bool(m and m.group(1)[0].isupper() and fold(m.group(1)) in PLACE_PREFIXES)


_PARTICLES = frozenset("de da di do dos du del della van von der den ter ten le la bin ibn al el y".split())
_CODE = re.compile(r"[IVX]+[a-z]?|[A-Z]|[α-ωΑ-Ω]")


def load_ner(spacy_model: str):
    from ingest.pii.nlp import load_spacy

    return load_spacy(spacy_model, True)


_shared: list | None = None
_shared_lock = threading.Lock()


def _all_recognizers() -> list:
    """One set of pattern recognizers per process (compiled regexes, stateless after construction)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _new_recognizers()
        return _shared


def _new_recognizers() -> list:
    from ingest.pii.addresses import AddressRecognizer
    from ingest.pii.identifiers import (
        bank_card_recognizer,
        cn_id_recognizer,
        cn_landline_recognizer,
        cn_mobile_recognizer,
        email_recognizer,
        iban_recognizer,
        intl_phone_recognizer,
        ip_recognizer,
        passport_recognizer,
        url_recognizer,
        us_ssn_recognizer,
        uscc_recognizer,
    )
    from ingest.pii.names_cn import cn_name_recognizer
    from ingest.pii.names_en import en_name_recognizer

    # Not Presidio's EmailRecognizer/UrlRecognizer: they call tldextract, which fetches the public-suffix
    # list over the network on first use. Its card/IBAN/IP/SSN recognizers are covered by ours, which
    # judge context on characters (Presidio's need a spaCy Doc of every text).
    return [
        cn_id_recognizer(), cn_mobile_recognizer(), cn_landline_recognizer(), intl_phone_recognizer(),
        bank_card_recognizer(), uscc_recognizer(), passport_recognizer(), email_recognizer(), url_recognizer(),
        iban_recognizer(), ip_recognizer(), us_ssn_recognizer(), cn_name_recognizer(), en_name_recognizer(),
        AddressRecognizer(),
    ]
