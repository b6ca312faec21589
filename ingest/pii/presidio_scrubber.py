"""The default Scrubber: Presidio's AnalyzerEngine with our recognizers, a few of Presidio's built-ins
and spaCy NER for English names; typed placeholders keep scrubbed text useful for retrieval."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from ingest.pii.entities import NER_ENTITIES, resolve_entities
from ingest.pii.redact import redact, resolve_overlaps
from ingest.types import PiiEntity, ScrubResult

# Presidio's names for the built-ins we use -> ours.
_PRESIDIO_TO_KB = {
    "CREDIT_CARD": "BANK_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "LOCATION": "LOCATION",
}
_KB_TO_PRESIDIO = {v: k for k, v in _PRESIDIO_TO_KB.items()}
# spaCy labels -> Presidio entity names (everything else the model emits is ignored).
_SPACY_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}


class PresidioScrubber:
    """Thread-safe after the first call; the engine and spaCy model load on first use, once."""

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        threshold: float = 0.5,
        scrub_names: bool = True,
        spacy_model: str = "en_core_web_sm",
    ):
        self.entities = resolve_entities(entities, scrub_names)
        self.threshold = threshold
        self.spacy_model = spacy_model
        self.use_ner = bool(NER_ENTITIES & set(self.entities))
        self._engine = None
        self._nlp_engine = None
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
        engine, nlp_engine = self._load()
        presidio_entities = list(self.entities) + [_KB_TO_PRESIDIO[e] for e in self.entities if e in _KB_TO_PRESIDIO]
        out = []
        for text, artifacts in zip(texts, nlp_engine.artifacts_for(texts), strict=True):
            if not text.strip():
                out.append([])
                continue
            results = engine.analyze(
                text, language="en", entities=presidio_entities, nlp_artifacts=artifacts,
                score_threshold=self.threshold,
            )
            found = [
                PiiEntity(_PRESIDIO_TO_KB.get(r.entity_type, r.entity_type), r.start, r.end, round(r.score, 3))
                for r in results
            ]
            kept = [e for e in found if not _negated(text, e) and _plausible(text, e)]
            out.append(resolve_overlaps(kept))
        return out

    def scrub_many(self, texts: Iterable[str]) -> list[ScrubResult]:
        texts = list(texts)
        return [ScrubResult(redact(t, e), e) for t, e in zip(texts, self.analyze_many(texts), strict=True)]

    def _load(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._nlp_engine, self._engine = _build_engine(self.spacy_model, self.use_ner)
        return self._engine, self._nlp_engine


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
    return not any(c.isdigit() for c in value) and not (value.isupper() and len(value) <= 5)


_engines: dict[tuple[str, bool], tuple] = {}
_engines_lock = threading.Lock()


def _build_engine(spacy_model: str, use_ner: bool):
    """One AnalyzerEngine per (model, ner) per process: scrubbers built from settings share it."""
    key = (spacy_model, use_ner)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _new_engine(spacy_model, use_ner)
        return _engines[key]


def _new_engine(spacy_model: str, use_ner: bool):
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

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
        uscc_recognizer,
    )
    from ingest.pii.names_cn import cn_name_recognizer
    from ingest.pii.names_en import en_name_recognizer
    from ingest.pii.spacy_engine import KbSpacyEngine

    nlp_engine = KbSpacyEngine(spacy_model, use_ner, _SPACY_LABELS)
    nlp_engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for rec in (
        cn_id_recognizer(), cn_mobile_recognizer(), cn_landline_recognizer(), intl_phone_recognizer(),
        bank_card_recognizer(), uscc_recognizer(), passport_recognizer(), email_recognizer(), url_recognizer(),
        cn_name_recognizer(), en_name_recognizer(), AddressRecognizer(), iban_recognizer(), ip_recognizer(),
        # Presidio built-ins that apply. Not EmailRecognizer/UrlRecognizer: they call tldextract, which
        # fetches the public-suffix list over the network on first use.
        CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer(), IpRecognizer(),
    ):
        registry.add_recognizer(rec)
    if use_ner:
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]))
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    return nlp_engine, engine
