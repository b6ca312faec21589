"""Find the passage numbers an answer cites, normalize them to ``[n]`` and drop the unknown ones.

Models write citations in many shapes: ``[1]``, ``[1, 2]``, ``[1][2]``, ``[1-3]``, and in Chinese
text full-width ``【1】`` or ``［1，2］``. The clean answer writes each valid number as its own ``[n]``
so the UI can link it; numbers that do not name a passage shown to the model are removed and reported.
"""

from __future__ import annotations

import re

# Opening/closing bracket pairs: ASCII, full-width square, and the lenticular brackets of Chinese text.
_OPEN = r"[\[［【〔]"
_CLOSE = r"[\]］】〕]"
_NUM = r"[0-9０-９]{1,6}"
_DASH = r"[-‐‑‒–—~～]"
_SEP = r"[,，、;；]"
_ITEM = rf"{_NUM}\s*(?:{_DASH}\s*{_NUM})?"
_GROUP = re.compile(rf"(?P<space>[ \t]*){_OPEN}\s*(?P<body>{_ITEM}(?:\s*{_SEP}\s*{_ITEM})*)\s*{_CLOSE}")
_ITEM_RE = re.compile(rf"(?P<a>{_NUM})\s*(?:{_DASH}\s*(?P<b>{_NUM}))?")

# A range wider than this is not a citation a model meant; it is reported, not expanded.
_MAX_RANGE = 50

_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def _numbers(body: str) -> tuple[list[int], list[int]]:
    """Numbers named by a bracket body, and out-of-bound range endpoints that could not be expanded."""
    nums: list[int] = []
    unexpanded: list[int] = []
    for m in _ITEM_RE.finditer(body.translate(_FULLWIDTH_DIGITS)):
        a = int(m.group("a"))
        if m.group("b") is None:
            nums.append(a)
            continue
        b = int(m.group("b"))
        lo, hi = min(a, b), max(a, b)
        if hi - lo > _MAX_RANGE:
            unexpanded.extend([lo, hi])
        else:
            nums.extend(range(lo, hi + 1))
    return nums, unexpanded


def check_citations(answer: str, n_passages: int) -> tuple[str, list[int], list[int]]:
    """Return ``(clean_answer, cited, invalid)``.

    ``cited``: valid passage numbers (1..n_passages) in order of first appearance, each once.
    ``invalid``: numbers outside 1..n_passages that were removed, in order of first appearance.
    """
    cited: list[int] = []
    invalid: list[int] = []

    def replace(m: re.Match[str]) -> str:
        nums, unexpanded = _numbers(m.group("body"))
        valid: list[int] = []
        for n in nums:
            if 1 <= n <= n_passages:
                if n not in valid:
                    valid.append(n)
                if n not in cited:
                    cited.append(n)
            elif n not in invalid:
                invalid.append(n)
        for n in unexpanded:
            if n not in invalid:
                invalid.append(n)
        if not valid:
            return ""  # the whole group was unknown: drop it with the space before it
        return m.group("space") + "".join(f"[{n}]" for n in valid)

    clean = _ECHO.sub(r"\1\2", _GROUP.sub(replace, answer))
    return clean, cited, invalid


# The same markers again right after a sentence's own ("… Islands [1]. [1]", a small model's habit).
_ECHO = re.compile(r"((?:\[\d+\])+)([.!?。！？]?)[ \t]*\1")


# --- post-hoc attribution ------------------------------------------------------------------------
# Small models often answer from the passages without writing [n]. A sentence that is mostly made of
# words from one passage is marked with that passage, so the reader can still check the source.
# A sentence ends at CJK end punctuation, or at . ! ? that are not followed by more text: "3.3 million",
# "v2.0" and "e.g.x" stay whole (a marker inside a number reads as part of it).
_SENTENCE = re.compile(r"(?:[^.!?。！？\n]|[.!?](?=[^\s.!?。！？]))+[.!?。！？]*")
_WORD = re.compile(r"[\u4e00-\u9fff]|[^\W_]+", re.UNICODE)
_STOP = frozenset((
    "a an the of to in on and or is are was were be been it its this that for with as at by from which "
    "who what when how do does did not no can may will shall should would could their there they he she "
    "we you i document documents passage passages according states said says "
).split())


def _content_words(text: str) -> list[str]:
    return [w for w in (m.group().casefold() for m in _WORD.finditer(text)) if w not in _STOP]


def _grams(words: list[str]) -> set[str]:
    """Words, plus adjacent pairs of CJK characters (single characters match too easily)."""
    out = {w for w in words if len(w) > 1 or not ("\u4e00" <= w <= "\u9fff")}
    out.update(a + b for a, b in zip(words, words[1:], strict=False) if len(a) == 1 and len(b) == 1)
    return out


def attribute_citations(answer: str, passages: list[str], min_overlap: float = 0.6,
                        min_words: int = 3) -> tuple[str, list[int]]:
    """Append ``[n]`` to sentences without a citation whose content words mostly come from passage n.

    Returns the marked answer and the passage numbers attributed this way (in order, each once).
    """
    passage_grams = [_grams(_content_words(p)) for p in passages]
    attributed: list[int] = []
    out: list[str] = []
    last = 0
    for m in _SENTENCE.finditer(answer):
        sentence = m.group()
        out.append(answer[last:m.start()])
        last = m.end()
        grams = _grams(_content_words(sentence))
        # a marker written after the end punctuation ("… station? [1]") is this sentence's own
        if _GROUP.search(sentence) or _GROUP.match(answer, m.end()) or len(grams) < min_words:
            out.append(sentence)
            continue
        best_n, best = 0, 0.0
        for n, pg in enumerate(passage_grams, 1):
            share = len(grams & pg) / len(grams)
            if share > best:
                best_n, best = n, share
        if best_n and best >= min_overlap:
            body = sentence.rstrip()
            tail = sentence[len(body):]
            end = len(body.rstrip(".!?。！？"))
            out.append(f"{body[:end]} [{best_n}]{body[end:]}{tail}")
            if best_n not in attributed:
                attributed.append(best_n)
        else:
            out.append(sentence)
    out.append(answer[last:])
    return "".join(out), attributed
