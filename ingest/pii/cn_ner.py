"""Chinese person names and addresses without cues: a character CRF (CRFsuite) trained on CLUENER2020.

The model is a small committed file (``data/cn_ner.crfsuite``) built by ``data/train_cn_ner.py`` from
CLUENER's train split (a fixed part held aside for our own figures); its sha256 is checked before it
is loaded, and nothing at run time reads the training data. Features are characters and character
pairs around each position, character classes and surname-list membership (``names_cn``), so the
tagger finds "张伟" in "张伟昨天去了银行" with no 先生/姓名 nearby.

Text is tagged per sentence (cut at 。！？；, line breaks and every ``_MAX_SEGMENT`` characters) and
only sentences holding Han characters are read: English text costs nothing here.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import ConfigError

MODEL_PATH = Path(__file__).with_name("data") / "cn_ner.crfsuite"
# Written by data/train_cn_ner.py; a retrained model must update it (a test checks they agree).
MODEL_SHA256 = "a5df84adcfc71ba65cf910fa5dc67f9591cc379f3d84fb5ea83add7a4c976817"

LABELS = {"PER": "PERSON", "ADDR": "ADDRESS"}
_TAGS = ("B-PER", "I-PER", "B-ADDR", "I-ADDR")
# Chosen on the held-aside tenth of CLUENER train (data/train_cn_ner.py prints the trade-off): a
# character is in a span from this probability on, and a span's mean probability must reach SPAN_MIN.
CHAR_MIN = 0.2
SPAN_MIN = 0.0
_HAN = re.compile(r"[\u3400-\u9fff]")
_CUT = re.compile(r"[^。！？!?；;\n]*(?:[。！？!?；;\n]+|$)")
_MAX_SEGMENT = 120
# What makes an address a postal one: what finds a household, a street, a village, a building, or an
# area with a house number or floor ("北京市朝阳区广渠门外10号", "沙河口区长兴电子城3楼"). CLUENER also
# labels bare places ("香港", "上海市", "海淀区", "新疆沙湾县") and kb's scrubber leaves those alone: a
# city, a district or a county is where a great many people live, not personal data, and scrubbing it
# makes documents about places unanswerable. A room number alone ("3号会议室") is no address either.
POSTAL = re.compile(r"[镇乡村路街道巷弄幢栋]|胡同|小区|大厦|花园|公寓|新村|单元|号楼|号院")
AREA_NUMBER = re.compile(r"[省市区县旗].*[0-9０-９一二三四五六七八九十]\s*[号层楼座]")
# Lines and ways, not where anyone lives: "龙烟铁路", "西九龙公路", "巴士路线"; "北海道" is a prefecture.
NOT_STREETS = re.compile(r"铁路|公路|路线|线路|巴士路|北海道")
# A bus or metro line ("472路", "786区间", "地铁1号线") names a route.
ROUTE = re.compile(r"(?:地铁)?[0-9０-９]+(?:路|号线|线)(?:区间|支线|快线|夜班)?|[0-9０-９]+区间")


def is_postal(value: str) -> bool:
    value = value.strip()
    if ROUTE.fullmatch(value) or (value.endswith("站") and "号" not in value):  # a line, a station
        return False
    return bool(POSTAL.search(NOT_STREETS.sub("", value)) or AREA_NUMBER.search(value))


# "嘉庆年间", "康熙元年": a reign title names an era (a date), never a private person.
ERA_AFTER = re.compile(r"年间|元年|年号")


@dataclass(frozen=True)
class Span:
    type: str  # our entity type: PERSON or ADDRESS
    start: int
    end: int
    score: float  # mean marginal probability of the span's tags


def _norm(c: str) -> str:
    """Full-width to half-width, lower case, every digit the same: what a feature sees of a character."""
    c = unicodedata.normalize("NFKC", c).lower()[:1] or c
    if c.isdigit():
        return "0"
    return c


def _cls(c: str) -> str:
    if _HAN.match(c):
        return "H"
    if c.isdigit():
        return "D"
    if c.isascii() and c.isalpha():
        return "L"
    if c.isspace():
        return "S"
    return "P"


_lexicon: dict[str, str] | None = None
_lexicon_lock = threading.Lock()
# jieba's dictionary tags -> our classes: person names, place names, other frequent words.
_DICT_CLASSES = {"nr": "n", "nrt": "n", "nrfg": "n", "ns": "s"}
_COMMON_FREQ = 100
_MAX_WORD = 4


def dictionary() -> dict[str, str]:
    """Words of 2-4 characters from the dictionary in the jieba wheel: n person name, s place, w other
    frequent word. Read once per process (about 0.5 s); a lookup table, no segmentation, so it is cheap."""
    global _lexicon
    if _lexicon is None:
        with _lexicon_lock:
            if _lexicon is None:
                import jieba

                path = Path(jieba.__file__).with_name("dict.txt")
                table: dict[str, str] = {}
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        word, freq, tag = (line.split() + ["", ""])[:3]
                        if not 2 <= len(word) <= _MAX_WORD:
                            continue
                        cls = _DICT_CLASSES.get(tag)
                        if cls is None and freq.isdigit() and int(freq) >= _COMMON_FREQ:
                            cls = "w"
                        if cls is not None:
                            table[word] = cls
                _lexicon = table
    return _lexicon


def _dict_marks(text: str, table: dict[str, str]) -> list[set[str]]:
    """For each character, the dictionary words covering it: class and position (B first, I inside, E last)."""
    marks: list[set[str]] = [set() for _ in text]
    n = len(text)
    for i in range(n - 1):
        for size in range(2, min(_MAX_WORD, n - i) + 1):
            cls = table.get(text[i : i + size])
            if cls is None:
                continue
            marks[i].add("d" + cls + "B")
            for k in range(i + 1, i + size - 1):
                marks[k].add("d" + cls + "I")
            marks[i + size - 1].add("d" + cls + "E")
    return marks


def features(text: str) -> list[list[str]]:
    """CRFsuite attributes for each character of ``text`` (training and tagging share this)."""
    from ingest.pii.cn_surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES

    c = ["^"] * 2 + [_norm(ch) for ch in text] + ["$"] * 2
    classes = ["B", "B"] + [_cls(ch) for ch in text] + ["E", "E"]
    marks = _dict_marks(text, dictionary())
    compound_start = {i for i in range(len(text) - 1) if text[i : i + 2] in COMPOUND_SURNAMES}
    out: list[list[str]] = []
    for i in range(len(text)):
        j = i + 2
        f = [
            "b",
            "u0=" + c[j], "u-1=" + c[j - 1], "u1=" + c[j + 1], "u-2=" + c[j - 2], "u2=" + c[j + 2],
            "b-1=" + c[j - 1] + c[j], "b0=" + c[j] + c[j + 1], "b-2=" + c[j - 2] + c[j - 1],
            "b1=" + c[j + 1] + c[j + 2],
            "t=" + classes[j - 1] + classes[j] + classes[j + 1],
        ]
        f += sorted(marks[i])  # sorted: the trained file must not depend on hash order
        if i > 0:
            f += [m + "-1" for m in sorted(marks[i - 1]) if m[1] != "w"]
        if i + 1 < len(text):
            f += [m + "+1" for m in sorted(marks[i + 1]) if m[1] != "w"]
        if text[i] in SINGLE_SURNAMES:
            f.append("sn0")
        if i > 0 and text[i - 1] in SINGLE_SURNAMES:
            f.append("sn-1")
        if i > 1 and text[i - 2] in SINGLE_SURNAMES:
            f.append("sn-2")
        if i in compound_start or (i - 1) in compound_start:
            f.append("csn")
        out.append(f)
    return out


def segments(text: str) -> Iterator[tuple[int, int]]:
    """Sentence ranges worth tagging: those with a Han character, at most ``_MAX_SEGMENT`` long."""
    for m in _CUT.finditer(text):
        s, e = m.span()
        if e <= s or not _HAN.search(text, s, e):
            continue
        while e - s > _MAX_SEGMENT:
            # cut long runs at a comma or space near the limit, so a name is rarely split
            cut = max(text.rfind(sep, s, s + _MAX_SEGMENT) for sep in "，,、 ")
            cut = cut + 1 if cut > s + _MAX_SEGMENT // 2 else s + _MAX_SEGMENT
            yield s, cut
            s = cut
        if e > s:
            yield s, e


def decode(marginals: list[dict[str, float]], char_min: float = CHAR_MIN) -> list[tuple[str, int, int, float]]:
    """(label, start, end, mean probability) runs of characters whose probability of being inside a
    ``label`` span (B- plus I- marginals) is at least ``char_min``; a character more likely B- than I-
    starts a new span. Thresholding marginals rather than taking the single best tagging is what
    buys recall: the best path drops a name the model gives 40% (measured in data/train_cn_ner.py)."""
    spans: list[tuple[str, int, int, float]] = []
    for label in LABELS:
        cur: list | None = None
        for i, m in enumerate(marginals):
            b, inside = m["B-" + label], m["I-" + label]
            if b + inside >= char_min:
                if cur is None or b > inside:
                    if cur is not None:
                        spans.append(tuple(cur))
                    cur = [label, i, i + 1, 0.0]
                cur[2] = i + 1
                cur[3] += b + inside
            elif cur is not None:
                spans.append(tuple(cur))
                cur = None
        if cur is not None:
            spans.append(tuple(cur))
    return sorted((lab, s, e, total / (e - s)) for lab, s, e, total in spans)


_local = threading.local()
_verified: set[str] = set()
_verify_lock = threading.Lock()


def _verify(path: Path, sha256: str) -> None:
    with _verify_lock:
        if str(path) in _verified:
            return
        if not path.is_file():
            raise ConfigError(f"The Chinese name model {path} is missing: reinstall kb or rebuild it with "
                              "`python ingest/pii/data/train_cn_ner.py` (see ingest/pii/data/README.md).")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise ConfigError(f"The Chinese name model {path} has sha256 {digest}, expected {sha256}: the file is "
                              "damaged or was retrained without updating cn_ner.MODEL_SHA256.")
        _verified.add(str(path))


def _tagger(path: Path = MODEL_PATH, sha256: str = MODEL_SHA256):
    """One CRFsuite tagger per thread (a tagger holds its current sequence, so it is not shareable)."""
    taggers = getattr(_local, "taggers", None)
    if taggers is None:
        taggers = _local.taggers = {}
    if str(path) not in taggers:
        import pycrfsuite

        _verify(path, sha256)
        tagger = pycrfsuite.Tagger()
        tagger.open(str(path))
        taggers[str(path)] = tagger
    return taggers[str(path)]


def tag_text(text: str, tagger=None, char_min: float = CHAR_MIN) -> list[tuple[str, int, int, float]]:
    """(CRF label, start, end, mean probability) for the names and addresses the CRF finds in ``text``."""
    tagger = tagger or _tagger()
    out: list[tuple[str, int, int, float]] = []
    for s, e in segments(text):
        tagger.set(features(text[s:e]))
        marginals = [{t: tagger.marginal(t, i) for t in _TAGS} for i in range(e - s)]
        out += [(lab, s + a, s + b, sc) for lab, a, b, sc in decode(marginals, char_min)]
    return out


def find(text: str, char_min: float = CHAR_MIN, span_min: float = SPAN_MIN, tagger=None) -> list[Span]:
    """PERSON and ADDRESS spans in ``text``, trimmed of punctuation; one-character spans and reign titles
    are dropped."""
    spans = []
    for label, s, e, score in tag_text(text, tagger, char_min):
        while s < e and not text[s].isalnum():
            s += 1
        while e > s and not text[e - 1].isalnum():
            e -= 1
        if label == "PER" and ERA_AFTER.match(text, e):
            continue
        if e - s >= 2 and score >= span_min:
            spans.append(Span(LABELS[label], s, e, round(score, 3)))
    return spans
