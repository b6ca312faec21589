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

    clean = _GROUP.sub(replace, answer)
    return clean, cited, invalid
