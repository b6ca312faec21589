"""A Presidio NlpEngine around our slim spaCy pipeline (see ingest.pii.nlp)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine

from ingest.pii.nlp import entity_docs, load_spacy


class KbSpacyEngine(SpacyNlpEngine):
    def __init__(self, model: str, ner: bool, label_map: dict[str, str]):
        config = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(label_map),
            labels_to_ignore=["CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL",
                              "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"],
        )
        super().__init__(models=[{"lang_code": "en", "model_name": model}], ner_model_configuration=config)
        self._model = model
        self._ner = ner

    def load(self) -> None:
        # Never SpacyNlpEngine.load: it would try `spacy download` (network) for a missing model.
        self.nlp = {"en": load_spacy(self._model, self._ner)}

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return next(self.artifacts_for([text]))

    def artifacts_for(self, texts: Iterable[str]) -> Iterator[NlpArtifacts]:
        for doc in entity_docs(self.nlp["en"], texts):
            yield self._doc_to_nlp_artifact(doc, "en")

    def _doc_to_nlp_artifact(self, doc, language: str) -> NlpArtifacts:
        artifacts = super()._doc_to_nlp_artifact(doc, language)
        # No lemmatizer in the slim pipeline: lower-cased words serve Presidio's context matching.
        artifacts.lemmas = [t.lower_ for t in doc]
        artifacts.keywords = artifacts.set_keywords(self, artifacts.lemmas, language)
        return artifacts
