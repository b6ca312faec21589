"""English person names from a general name lexicon (data/en_names.tsv: international first names and
US census surnames, see data/build_names.py) combined with capitalisation and the words around a name.

spaCy's small model misses many names ("They had 6: Amber, Brandi, Malon ...", "Why is Iwao so
impulsive?") and is slow; a lexicon lookup is cheap and finds most of them. What keeps precision:

- a first name alone counts; a surname alone ("Parkinson", "Gram", "Western") needs support: a first
  name or initial before it, a neighbouring name in a list, or a cue such as "said";
- names that are also ordinary words or places ("Will", "May", "Victoria") need the same support;
- eponyms are not people: "Parkinson's disease", "Kaplan-Meier", "Gram-negative", "Cox regression";
- a run followed by Inc/Ltd/University/Street/... is an organisation or a place.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from presidio_analyzer import LocalRecognizer, RecognizerResult

LEXICON_PATH = Path(__file__).with_name("data") / "en_names.tsv"

_lexicon: dict[str, str] | None = None
_lexicon_lock = threading.Lock()


def lexicon() -> dict[str, str]:
    """name (ASCII-folded, lower case) -> flags: f first name, s surname, w ordinary word, p place."""
    global _lexicon
    if _lexicon is None:
        with _lexicon_lock:
            if _lexicon is None:
                table = {}
                for line in LEXICON_PATH.read_text(encoding="ascii").splitlines():
                    name, _, flags = line.partition("\t")
                    table[name] = flags
                _lexicon = table
    return _lexicon


def fold(word: str) -> str:
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


# Capitalised words (Latin, Latin Extended, Greek, Cyrillic capitals); lower-case texts use _ANY_WORD.
_CAP_WORD = re.compile(
    r"(?<![\w'’-])[A-ZÀ-ÖØ-Þ\u0100-\u024f\u0370-\u03ff\u0400-\u042f][^\W\d_]*(?:['’-][^\W\d_]+)*(?![\w-])"
)
_ANY_WORD = re.compile(r"(?<![\w'’-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w-])")
# What may sit between two words of one name: a space, a particle, or the dot of an initial.
_GAP = re.compile(
    r"[ \t]+(?:(?:de|da|di|do|dos|du|del|della|van|von|der|den|ter|ten|le|la|bin|ibn|al|el|y)[ \t]+)?"
)
# A capital inside a word, except name prefixes: McDonald, MacLeod, DeVito, LeBron, O'Neil, Smith-Jones.
_INNER_CAPITAL = re.compile(r"(?!Mc|Mac|De|Di|Da|La|Le|Van|Von)[^\W\d_][^\W\d_A-Z'’-]*[A-Z]")
# "Candida albicans", "Escherichia coli": a genus with its species is not a person.
_SPECIES = re.compile(r"[ \t]+[a-z]{2,}(?:us|um|is|ae|ans|ens|ii|ensis|oides|ata|osa|ica|coli)\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n\"“(>•*]|\?{2,})[ \t'\"“‘]*$")
_POSSESSIVE = ("'s", "’s")

# A capitalised word after a name that makes the run an organisation, a place or a thing.
_NOT_NAME_WORDS = frozenset(
    """inc ltd llc plc corp co company group associates partners holdings labs lab technologies technology
    solutions systems services consulting bank foundation university college institute school hospital
    clinic center centre department ministry agency council committee society association club church
    street st avenue ave road rd lane ln drive dr boulevard blvd way court place square park river lake
    mount mountain island islands bay city county state province republic kingdom valley beach airport
    station hotel museum library press journal trust fund media records studio studios productions
    international global national""".split()
)
# Nouns that follow an eponym: "Parkinson's disease", "Cox regression", "Western blot".
_EPONYM_NOUNS = frozenset(
    """disease diseases syndrome syndromes disorder lymphoma lymphomas sarcoma carcinoma tumor tumors tumour
    test tests method methods model models equation equations law laws effect effects curve curves plot
    plots estimator criteria criterion score scores scale index cell cells body bodies apparatus reaction
    stain staining blot blotting classification ratio coefficient distribution algorithm procedure
    operation sign phenomenon principle theorem hypothesis type grade stage ulcer palsy fracture virus
    cycle loop complex element transform analysis correction regression space number constant function
    process node nodes esophagus membrane gland glands duct canal sheath fibers fibres junction formula
    approximation assay protocol medium agar solution buffer strain strains encephalopathy dementia
    chorea anemia anaemia sarcomas ataxia dystrophy neuralgia phenomenon polynomial series transformation
    matrix method's""".split()
)
# Nationalities and languages that are also given names or surnames ("Thai food", "a French lawyer").
DEMONYMS = frozenset(
    """thai chinese japanese korean vietnamese indian french german english irish scottish welsh british dutch
    danish swedish norwegian finnish polish russian ukrainian czech slovak hungarian romanian bulgarian greek
    turkish italian spanish portuguese brazilian mexican cuban american canadian australian african egyptian
    moroccan nigerian kenyan persian arab arabic hebrew israeli filipino malay indonesian tibetan mongolian
    swiss austrian belgian latin asian european nordic celtic creole haitian jamaican peruvian chilean
    argentine colombian venezuelan cantonese mandarin hindi urdu bengali tamil punjabi swahili""".split()
)
# A word before a capitalised word that makes the pair a place: "San Francisco", "Los Angeles".
PLACE_PREFIXES = frozenset(
    "san santa santo sao los las el fort saint st port puerto porto rio costa new lake mount mt cape palo del "
    "des baton grand little north south east west upper lower".split()
)
# Whom greetings and sign-offs address that is no person: "Hi All", "Dear Team", "Hello World".
ADDRESSEE_WORDS = frozenset(
    """all everyone everybody anyone world there team teams folks guys gals friends friend colleagues colleague
    people members member sir sirs madam madame mesdames gentlemen ladies lady gentleman customer customers client
    clients user users partner partners parents student students staff employees employee committee board
    council community neighbours neighbors readers reader viewers listeners subscribers supporters fans class
    crew family guests guest admin admins administrator support sales marketing operations management
    manager managers hr finance accounting legal it engineering service services office department division
    group groups company ops devs developers developer reviewers reviewer hiring recruiter recruiters applicant
    candidate candidates valued again back future morning afternoon evening night day week weekend year new
    happy thanks thank you regards best wishes kind warm sincerely cheers""".split()
)
_ARTICLES = frozenset("the our your my his her their a an this that these those".split())


def not_addressee(value: str) -> bool:
    """False for "All", "Team", "World", "The Finance Department": ordinary words, groups and
    organisations that greetings and sign-offs address; True for what may be a person's name."""
    words = [fold(w.strip(".,'’")) for w in value.split()]
    if not words or words[0] in _ARTICLES:
        return False
    if any(w in ADDRESSEE_WORDS or w in _NOT_NAME_WORDS for w in words):
        return False
    table = lexicon()
    return not all("w" in table.get(w, "") and "f" not in table.get(w, "") for w in words)


_CUE_BEFORE = re.compile(
    r"(?:\b(?:said|says|told|asked|named|called|dear|hi|hello|hey|thanks|thank\s+you|meet|met|married|"
    r"starring|directed\s+by|written\s+by|founded\s+by|according\s+to|name\s+is|name's|maiden\s+name\s+is|"
    r"wife|husband|son|daughter|mother|father|brother|sister|friend|colleague)[ \t:,]*)$",
    re.IGNORECASE,
)
_GREETING = re.compile(r"(?:dear|hi|hello|hey|thanks|thank\s+you)\b", re.IGNORECASE)
_CUE_AFTER = re.compile(
    r"^(?:['’]s\s+(?:daughter|son|wife|husband|mother|father|brother|sister|friend|family|house|home|"
    r"address|account|phone|email|car|office|birthday|boss|mom|dad|children|kids|book|novel|song|album)\b"
    r"|[ \t]*,?[ \t]+(?:said|says|told|asked|replied|wrote|shouted|smiled|laughed|nodded|explained|added)\b)",
    re.IGNORECASE,
)
_LIST_GLUE = re.compile(r"^(?:[ \t]*,[ \t]*(?:and[ \t]+|&[ \t]*|or[ \t]+)?|[ \t]+(?:and|&|or)[ \t]+)$")

FIRST_ALONE = 0.6  # a first name that is no ordinary word: "Kevin", "Iwao"
FULL_NAME = 0.75  # first name + another name word: "Latoya Shimasaki"
WEAK = 0.4  # a surname alone, or an ambiguous first name: shown only with support
SUPPORTED = 0.6
PLACE_CUE = 0.4  # below the default threshold: never scrubbed itself, enough to send its sentence to NER


@dataclass
class _Word:
    start: int
    end: int
    flags: str  # lexicon flags; "" when unknown
    folded: str


@dataclass
class _Candidate:
    start: int
    end: int
    score: float
    fixed: bool = False  # no cue or neighbour raises it


class NameLexiconRecognizer(LocalRecognizer):
    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="kb_name_lexicon")

    def load(self) -> None:  # the lexicon loads on first analyze (about 60,000 lines)
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        if entities and "PERSON" not in entities:
            return []
        return [RecognizerResult("PERSON", c.start, c.end, c.score) for c in find_names(text)]


def find_names(text: str, min_score: float = 0.5) -> list[_Candidate]:
    """Name candidates scored 0-1; those below ``min_score`` are dropped."""
    table = lexicon()
    lower_text = not any(c.isupper() for c in text)  # chat style: capitals tell nothing
    rx = _ANY_WORD if lower_text else _CAP_WORD
    words = []
    for m in rx.finditer(text):
        start, end = m.span()
        token = m.group()
        if token.endswith(_POSSESSIVE):
            token, end = token[:-2], end - 2
        if not lower_text and (len(token) > 1 and token.isupper() or _INNER_CAPITAL.match(token)):
            continue  # acronyms and gene/cell-line names: "DNA", "TatA", "HeLa", "IVa"
        if text.startswith(("+", "/"), end):
            continue  # ions and ratios: "Na+", "Na/K"
        folded = fold(token)
        if "'" in folded or "’" in folded:  # O'Neil, D'Angelo: the name after the apostrophe
            head, _, tail = folded.replace("’", "'").partition("'")
            flags = (table.get(head + tail, "") or table.get(tail, "") or "s") if head in ("o", "d", "l") else ""
        elif "-" in folded:
            flags = _hyphenated_flags(folded.split("-"), table)
        else:
            flags = table.get(folded, "")
        if lower_text and not flags:
            continue
        words.append(_Word(start, end, flags, folded))
    candidates = []
    for run in _runs(text, words):
        cand = _judge(text, run, lower_text)
        if cand is not None:
            candidates.append(cand)
    _support(text, candidates)
    return [c for c in candidates if c.score >= min_score]


def _hyphenated_flags(parts: list[str], table: dict[str, str]) -> str:
    """'Garcia-Smith' is a name when every part is one; 'Gram-negative' is not."""
    if len(parts) < 2 or not all("f" in table.get(p, "") or "s" in table.get(p, "") for p in parts):
        return "x"  # known not to be a name
    return "s"


def _runs(text: str, words: list[_Word]) -> list[list[_Word]]:
    runs: list[list[_Word]] = []
    for w in words:
        if runs and len(runs[-1]) < 5 and _joined(text, runs[-1][-1], w):
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def _joined(text: str, a: _Word, b: _Word) -> bool:
    gap_start = a.end + 1 if a.end - a.start == 1 and text.startswith(".", a.end) else a.end  # "J. Smith"
    return bool(_GAP.fullmatch(text, gap_start, b.start))


def _is_name_word(w: _Word) -> bool:
    return "f" in w.flags or "s" in w.flags


def _ambiguous(w: _Word) -> bool:
    return "w" in w.flags or "p" in w.flags


def _judge(text: str, run: list[_Word], lower_text: bool) -> _Candidate | None:
    # Leading words that are not names ("Dear", "Professor") or are ordinary words first ("The", "In")
    # are not part of the name.
    i = 0
    while i < len(run) and (not _is_name_word(run[i]) or (_ambiguous(run[i]) and "c" not in run[i].flags
                                                          and i + 1 < len(run))):
        if run[i].folded in _NOT_NAME_WORDS:
            return None  # "University of ..." style runs are not names
        i += 1
    if i == len(run):
        return None
    core = [run[i]]
    for w in run[i + 1 :]:
        if w.folded in _NOT_NAME_WORDS or w.flags == "x":
            return None  # "Morgan Stanley Bank", "Davis Street"
        if _is_name_word(w) or (not w.flags and len(core) == 1 and "f" in core[0].flags):
            core.append(w)  # an unknown word after a first name is the surname ("Latoya Shimasaki")
        else:
            break
    first, last = core[0], core[-1]
    start, end = first.start, last.end
    if any(w.folded in PLACE_PREFIXES for w in run[: i + (len(core) > 1)]) or (
        len(core) == 1 and first.folded in DEMONYMS
    ):
        # Not a name ("San Francisco", "Thai food"), but its sentence may hold one: NER reads it.
        return _Candidate(start, end, PLACE_CUE, fixed=True)
    if _followed_by_non_name(text, end) or _eponym(text, end) or _followed_by_code(text, end):
        return None
    if len(core) == 1 and not lower_text and _SPECIES.match(text, end):
        return None
    if len(core) >= 2:
        if "f" in first.flags and not _ambiguous(first):
            score = FULL_NAME
        elif "f" in first.flags:  # "Mark Smith" yes, "Gene Approach" not without support
            score = FULL_NAME if _is_name_word(last) and not _ambiguous(last) else WEAK
        else:
            score = 0.55 if not any(_ambiguous(w) for w in core) else WEAK
    elif "f" in first.flags and not _ambiguous(first) and ("c" in first.flags or end - start > 3):
        score = FIRST_ALONE - (0.05 if lower_text else 0.0)
    elif _sentence_start(text, start) and _ambiguous(first):
        score = 0.2  # "Will ...", "May ..."
    else:
        score = WEAK
    return _Candidate(start, end, score)


_CODE_AFTER = re.compile(r"[ \t]*(?:[IVX]+[a-z]?|[A-Z]|\d+|[α-ωΑ-Ω])(?![\w])")


def _followed_by_code(text: str, end: int) -> bool:
    """'Pol IV', 'Aurora B', 'Ad E': a gene or protein with its variant, not a person."""
    return bool(_CODE_AFTER.match(text, end))


def _followed_by_non_name(text: str, end: int) -> bool:
    m = re.match(r"[ \t]*,?[ \t]*&?[ \t]*([A-Za-z]+)\.?", text[end : end + 30])
    return bool(m and m.group(1)[0].isupper() and m.group(1).lower() in _NOT_NAME_WORDS)


def _eponym(text: str, end: int) -> bool:
    m = re.match(r"(?:['’]s)?[ \t]*[-–]?[ \t]*([A-Za-z]+)", text[end : end + 30])
    return bool(m and m.group(1).lower() in _EPONYM_NOUNS)


def _sentence_start(text: str, start: int) -> bool:
    return bool(_SENTENCE_START.search(text, max(0, start - 6), start))


def _support(text: str, candidates: list[_Candidate]) -> None:
    """Raise weak candidates that have a cue word or sit in a list next to a name."""
    for c in candidates:
        if c.fixed or not 0.2 <= c.score < SUPPORTED:
            continue
        before = _CUE_BEFORE.search(text, max(0, c.start - 30), c.start)
        if before and _GREETING.match(before.group()) and not not_addressee(text[c.start : c.end]):
            continue  # "Hello World", "Hi All": a greeting's addressee, not a name
        if before or _CUE_AFTER.match(text[c.end : c.end + 30]):
            c.score = SUPPORTED
    for _ in range(2):  # twice, so support travels along a list
        for a, b in zip(candidates, candidates[1:], strict=False):
            if not _LIST_GLUE.match(text[a.end : b.start]):
                continue
            if a.score >= 0.5 and 0.2 <= b.score < SUPPORTED and not b.fixed:
                b.score = SUPPORTED
            elif b.score >= 0.5 and 0.2 <= a.score < SUPPORTED and not a.fixed:
                a.score = SUPPORTED
