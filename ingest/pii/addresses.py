"""Postal addresses by pattern: English/international street lines, unit and box lines, multi-line
address blocks, and Chinese addresses built from 省/市/区/县/镇/路/街/号 components.

Country and city names alone are not personal data and are left to spaCy's LOCATION (off by default)."""

from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer, RecognizerResult


def _words(text: str) -> list[str]:
    return text.split()


_STREET_TYPES_LIST = _words(
    "street st road rd avenue ave boulevard blvd drive dr lane ln way court ct place pl "
    "square sq terrace parkway pkwy highway hwy circle cir trail crescent close row alley "
    "plaza walk gardens mews straße strasse str gasse weg allee platz laan straat gracht "
    "vej gade gatan gata vägen väg veien tie katu utca út útja ulica ul rue avenida av "
    "calle rua via viale corso piazza carrer camino paseo"
)
# Case matters: "Close", "Way", "Row" are streets, "close", "way", "row" are words of prose.
_STREET_TYPES = "|".join(w.capitalize() for w in _STREET_TYPES_LIST) + "|" + "|".join(
    w.upper() for w in _STREET_TYPES_LIST if len(w) > 3
)
_PREFIX_TYPES = "Rue|Via|Viale|Calle|Avenida|Rua|Corso|Piazza|Carrer|Camino|Paseo|Ulica|Travessa|Quai"
_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_UNIT = r"(?:apt\.?|apartment|suite|ste\.|unit|flat|floor|fl\.|room|rm\.)[ \t]*#?[ \t]*\d+[a-z]?"
_WORD = r"[^\W\d_][\w'’.-]*"

# "12 Main Street", "3022 Benson Park Drive", "98 Grote Baan 477"-like lines need a number and a street
# word; "Via Capo le Case 143" / "rue La Boétie" have the street word first.
_STREET_EN = (
    rf"\b\d{{1,5}}[a-z]?,?[ \t]+(?:{_WORD}[ \t]+){{0,4}}(?:{_STREET_TYPES})\b\.?(?:[ \t]+\d{{1,5}}[a-z]?\b\.?)?"
    rf"|\b(?:{_PREFIX_TYPES})[ \t]+(?:{_WORD}[ \t]+){{1,3}}\d{{1,5}}\b"
)
# "Koenigstrasse 51", "Frørupvej 58", "Chausseestr. 32": the street word is glued to the name.
_GLUED_STREET = (
    r"\b[^\W\d_]{2,}(?:strasse|straße|str\.|gasse|weg|vej|veien|vegen|gata|gatan|vägen|tie|katu|laan|straat"
    r"|plein|plads|gade|allee|platz|damm|ulica|utca|utcája)[ \t]+\d{1,5}[a-z]?\b\.?"
)
# "on Gordon Street": a capitalised name and a spelled-out street word, no number.
_NAMED_STREET = (
    r"\b(?:[A-ZÀ-ÖØ-Þ][\w'’-]+[ \t]+){1,3}(?:Street|Avenue|Road|Lane|Boulevard|Drive|Terrace|Parkway|Highway"
    r"|Crescent|Strasse|Straße)\b"
)
_BOX = (
    r"\bP\.?\s?O\.?\s?Box[ \t]+\d+|\bPSC[ \t]+\d+,?[ \t]+Box[ \t]+\d+|\b(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5}"
    r"|\b(?:USNS|USNV|USS|USCGC)[ \t]+[A-Z]\w+"
)
# "30 Veslebakken 48", "77 Obere Bahnhofstrasse 9": house number, capitalised words, number.
_NUM_WORDS_NUM = rf"\b\d{{1,5}}[ \t]+(?!(?:{_MONTHS})\b)(?:[A-ZÀ-ÖØ-Þ][^\W\d_][\w'.-]*[ \t]+){{1,4}}\d{{1,5}}\b"
# Explicit cues: text after them up to the end of the line/sentence is an address.
_CUE = (
    r"(?:\baddress(?:es)?\b(?:\s+(?:is|was|to|with|as|at|of|to the same))*\s*[:：]?|\blives?\s+at|\blived\s+at"
    r"|\bzip\s*code\s+is|\bpost(?:al)?\s*code\s+is|\bsent\s+to|\bship(?:ped)?\s+to|\bdeliver(?:ed)?\s+to"
    r"|\blocated\s+at|\bresides?\s+at|\bmoved\s+to)"
)
_CUE_TAIL = (
    r"\s*(?:my\s+|the\s+|new\s+)*(?![0-9A-Fa-f]*[:.][0-9A-Fa-f]*[:.])"  # not an IP address
    r"(\d{1,5}(?:[^\n.!?]{3,80}?)?)(?=\s+for\s|[.!?](?:\s|$)|\n\s*\n|$)"
)

# A line inside an address block: short, no sentence punctuation, words and numbers only.
_BLOCK_LINE = re.compile(r"^[ \t>?•*-]*([^\n!?:;]{2,45}?)[ \t,]*$")
_NUMBERED_LINE = re.compile(rf"^[ \t>?•*-]*(\d{{1,5}}\s+{_WORD}(?:\s+{_WORD}){{0,4}}\s+\d{{1,5}}\.?)[ \t]*$", re.M)

# Chinese addresses.
_HAN = r"[\u4e00-\u9fa5]"
_HANX = rf"(?:(?![的在住于到是址我他她你们了和与及从往向由自寄送位要去来把将请地]){_HAN})"
_NUM = r"[0-9０-９一二三四五六七八九十百千零〇]+"
_CN_ADMIN = (
    rf"(?:{_HANX}{{2,7}}?(?:省|自治区|特别行政区))?"
    rf"(?:{_HANX}{{1,7}}?(?:市|自治州|州|盟|地区))?"
    rf"(?:{_HANX}{{1,6}}?(?:区|县|旗))?"
)
_CN_TOWN = rf"(?:{_HANX}{{1,6}}?(?:镇|乡|街道|村|社区|开发区|工业园区?))?"
_CN_STREET = rf"{_HANX}{{1,10}}?(?:路|街|大街|大道|巷|胡同|弄|道|里)(?:{_NUM}[号弄])?"
_CN_TAIL = (
    rf"(?:{_NUM}(?:号|栋|幢|号楼|座|楼|单元|层|室|房|号院)|[A-Za-z]座?"
    rf"|{_HANX}{{2,8}}?(?:小区|花园|大厦|公寓|广场|苑|园|新村))*"
)
_CN_FULL = rf"{_CN_ADMIN}{_CN_TOWN}{_CN_STREET}{_CN_TAIL}"
_CN_ADMIN_ONLY = (
    rf"{_HANX}{{2,7}}?(?:省|自治区)(?:{_HANX}{{1,7}}?(?:市|州|盟))(?:{_HANX}{{1,6}}?(?:区|县|旗))?{_CN_TOWN}"
    rf"|{_HANX}{{2,4}}?市{_HANX}{{1,6}}?(?:区|县){_CN_TOWN}"
)
_CN_CUE = r"(?:地址|住址|住在|居住在|家住|户籍地|现住|寄到|寄往|送到|收货地址|通讯地址|位于|坐落于)[：:\s]*"


class AddressRecognizer(LocalRecognizer):
    def __init__(self) -> None:
        self._street = re.compile(_STREET_EN)
        self._unit = re.compile(rf"\b{_UNIT}\b", re.IGNORECASE)
        self._box = re.compile(_BOX, re.IGNORECASE)
        self._glued = re.compile(_GLUED_STREET, re.IGNORECASE)
        self._named = re.compile(_NAMED_STREET)
        self._num_words_num = re.compile(_NUM_WORDS_NUM)
        self._cue = re.compile(_CUE + _CUE_TAIL, re.IGNORECASE)
        self._cn_full = re.compile(_CN_FULL)
        self._cn_admin = re.compile(_CN_ADMIN_ONLY)
        self._cn_cue = re.compile(_CN_CUE)
        super().__init__(supported_entities=["ADDRESS"], name="kb_address")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        if entities and "ADDRESS" not in entities:
            return []
        spans: list[tuple[int, int, float]] = []
        if text.isascii() or re.search(r"[^\W\d_]", text):
            spans += self._latin(text)
        if re.search(r"[\u4e00-\u9fa5]", text):
            spans += self._chinese(text)
        return [RecognizerResult("ADDRESS", s, e, sc) for s, e, sc in _merge(spans)]

    def _latin(self, text: str) -> list[tuple[int, int, float]]:
        spans: list[tuple[int, int, float]] = []
        for m in self._street.finditer(text):
            spans.append((m.start(), m.end(), 0.7))
        for m in self._unit.finditer(text):
            spans.append((m.start(), m.end(), 0.65))
        for m in self._box.finditer(text):
            spans.append((m.start(), m.end(), 0.75))
        for m in self._glued.finditer(text):
            spans.append((m.start(), m.end(), 0.65))
        for m in self._named.finditer(text):
            spans.append((m.start(), m.end(), 0.55))
        for m in self._num_words_num.finditer(text):
            spans.append((m.start(), m.end(), 0.6))
        for m in self._cue.finditer(text):
            spans.append((m.start(1), m.end(1), 0.8))
        if spans:
            for m in _NUMBERED_LINE.finditer(text):
                spans.append((m.start(1), m.end(1), 0.6))
            spans = _grow_blocks(text, spans)
        return spans

    def _chinese(self, text: str) -> list[tuple[int, int, float]]:
        spans: list[tuple[int, int, float]] = []
        cued = {m.end() for m in self._cn_cue.finditer(text)}
        for rx, base in ((self._cn_full, 0.7), (self._cn_admin, 0.6)):
            for m in rx.finditer(text):
                s, e = m.span()
                if e - s < 4:
                    continue
                value = m.group()
                # A bare "XX路" is a weak signal; a number or an admin level makes it an address.
                parts = sum(value.count(c) for c in "省市区县镇乡路街号楼室村")
                if parts < 2 and s not in cued:
                    continue
                spans.append((s, e, 0.9 if s in cued else base))
        return spans


def _merge(spans: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    out: list[tuple[int, int, float]] = []
    for s, e, sc in sorted(spans):
        if out and s <= out[-1][1]:
            ps, pe, psc = out[-1]
            out[-1] = (ps, max(pe, e), max(psc, sc))
        else:
            out.append((s, e, sc))
    return out


def _grow_blocks(text: str, spans: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Extend an address over its line and the following short lines of its block (city, country, code)."""
    grown = []
    for s, e, sc in _merge(spans):
        # to the left: house numbers and words on the same line ("45 Chausseestr. 32", "08 251 ...")
        left = _LEFT.search(text, max(0, s - 60), s)
        if left:
            s = left.start()
        end = e
        for _ in range(5):
            nl = text.find("\n", end)
            if nl < 0 or text[end:nl].strip(" \t,"):
                break
            nxt = nl + 1
            if text.startswith("\n", nxt):  # one blank line inside a block
                nxt += 1
            line_end = text.find("\n", nxt)
            line_end = len(text) if line_end < 0 else line_end
            m = _BLOCK_LINE.match(text[nxt:line_end])
            if not m or _looks_like_phone(text[nxt:line_end]):
                break
            end = nxt + m.end(1)
        grown.append((s, end, sc))
    return grown


_LEFT = re.compile(r"(?:\d{1,5}[ \t]+){1,2}$")


def _looks_like_phone(line: str) -> bool:
    digits = sum(c.isdigit() for c in line)
    return digits >= 7 or bool(re.search(r"\b(?:office|fax|mobile|phone|tel)\b", line, re.IGNORECASE))
