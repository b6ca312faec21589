"""Tokenizers for BM25: English (lowercase, stop words, light stemming) and Chinese (jieba or bigrams).

Text is split into runs of CJK characters and everything else; non-CJK runs go through the English
pipeline, CJK runs through jieba's search mode or overlapping character bigrams.

Options for Chinese, measured on CMRC2018 dev with ``bench/chinese_bm25.py`` (docs/benchmarks.md):
``fold_width`` maps full-width letters, digits and punctuation to their ASCII forms (NFKC) before
tokenizing, so "ＧＤＰ２０２３" matches "GDP2023"; ``user_dict`` loads an admin's jieba dictionary of domain
terms (one "term [frequency] [tag]" a line); ``oov_bigrams`` also indexes the character bigrams of words
jieba's dictionary does not know (names and terms its HMM guessed), so a question that segments them
differently still matches.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

CjkMode = Literal["jieba", "bigram"]

# Han ideographs (incl. extension A and compatibility), kana, hangul.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_RUN = re.compile(f"([{_CJK}]+)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HAS_CJK = re.compile(f"[{_CJK}]")

_ENGLISH_STOP = (
    """a an and are as at be but by for if in into is it no not of on or such that the their then there
    these they this to was will with which who whom what when where why how we you your our i me my he she
    him her his its them those from has have had do does did been being were than so can could would should
    may might must also about above after again against all any because before below between both during
    each few further here more most other out over own same some only too very just up down off once under
    until while"""
)
ENGLISH_STOP_WORDS = frozenset(_ENGLISH_STOP.split())

# Function words jieba emits as their own tokens; they carry no topical signal.
_CHINESE_STOP = (
    "的 了 是 在 和 与 及 或 也 都 就 而 之 其 被 把 这 那 有 为 以 于 上 中 下 个 着 对 从 到 由 将 等 并 但 "
    "吗 呢 吧 啊 么 什么 哪 哪个 哪些 多少 几 谁 怎么 怎样 如何 为什么 是否 一 一个"
)
CHINESE_STOP_WORDS = frozenset(_CHINESE_STOP.split())

_VOWELS = set("aeiou")


def _has_vowel(stem: str) -> bool:
    return any(c in _VOWELS for c in stem) or (len(stem) > 1 and "y" in stem[1:])


def light_stem(word: str) -> str:
    """Strip common inflections (plurals, -ed, -ing, -ly); much milder than Porter, never empties a word."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ingly", "edly", "ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and _has_vowel(word[: -len(suffix)]):
            word = word[: -len(suffix)]
            # hopp-ing -> hop; but keep -ll/-ss/-zz (call-ed -> call)
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            elif word.endswith(("at", "bl", "iz")):
                word += "e"
            break
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    return word


_jieba_lock = threading.Lock()
_jieba_tokenizers: dict[str | None, Any] = {}  # user dictionary path (None: none) -> jieba.Tokenizer


def _jieba(user_dict: str | None = None):  # noqa: ANN202 - jieba has no type hints
    """jieba with its bundled dictionary (plus ``user_dict``), loaded once per process, quietly and offline."""
    tok = _jieba_tokenizers.get(user_dict)
    if tok is None:
        with _jieba_lock:
            tok = _jieba_tokenizers.get(user_dict)
            if tok is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                logging.getLogger("jieba").setLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                if user_dict is not None:
                    path = Path(user_dict)
                    if not path.is_file():
                        raise ValueError(f"The Chinese user dictionary {path} does not exist "
                                         "(KB_RETRIEVAL__USER_DICT); give a UTF-8 file, one term a line.")
                    tok.load_userdict(str(path))
                _jieba_tokenizers[user_dict] = tok
    return tok


def _cjk_bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _cjk_jieba(run: str, user_dict: str | None = None, oov_bigrams: bool = False) -> list[str]:
    jb = _jieba(user_dict)
    out = []
    for tok in jb.cut_for_search(run, HMM=True):
        tok = tok.strip()
        if tok and tok not in CHINESE_STOP_WORDS:
            out.append(tok)
            if oov_bigrams and len(tok) > 2 and not jb.FREQ.get(tok):
                out.extend(_cjk_bigrams(tok))
    return out


def fold_width(text: str) -> str:
    """Full-width ASCII variants (letters, digits, punctuation, the ideographic space) to ASCII; Han
    characters are left alone (NFKC would also rewrite the CJK compatibility ideographs)."""
    if not _FULLWIDTH.search(text):
        return text
    return _FULLWIDTH.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


_FULLWIDTH = re.compile("[\uff01-\uff5e\u3000]+")


class Tokenizer:
    """Callable text -> list of index terms. Its config is saved with the BM25 statistics."""

    def __init__(self, cjk: CjkMode = "jieba", stem: bool = True, stop_words: bool = True, *,
                 fold_width: bool = False, user_dict: str | None = None, oov_bigrams: bool = False) -> None:
        if cjk not in ("jieba", "bigram"):
            raise ValueError(f"Unknown Chinese tokenizer {cjk!r}; use 'jieba' or 'bigram'.")
        self.cjk: CjkMode = cjk
        self.stem = stem
        self.stop_words = stop_words
        self.fold_width = fold_width
        self.user_dict = str(user_dict) if user_dict else None
        self.oov_bigrams = oov_bigrams
        if cjk == "jieba":
            ud, ob = self.user_dict, oov_bigrams
            self._cjk_fn: Callable[[str], list[str]] = lambda run: _cjk_jieba(run, ud, ob)
        else:
            self._cjk_fn = _cjk_bigrams

    def config(self) -> dict[str, object]:
        return {"cjk": self.cjk, "stem": self.stem, "stop_words": self.stop_words, "fold_width": self.fold_width,
                "user_dict": self.user_dict, "oov_bigrams": self.oov_bigrams}

    def _latin(self, text: str) -> list[str]:
        out = []
        for word in _WORD.findall(text.lower()):
            if self.stop_words and word in ENGLISH_STOP_WORDS:
                continue
            out.append(light_stem(word) if self.stem else word)
        return out

    def __call__(self, text: str) -> list[str]:
        if self.fold_width:
            text = fold_width(text)
        if not _HAS_CJK.search(text):
            return self._latin(text)
        terms: list[str] = []
        for i, part in enumerate(_RUN.split(text)):
            if not part:
                continue
            # re.split with one capture group alternates non-CJK (even) and CJK (odd) parts
            terms.extend(self._cjk_fn(part) if i % 2 else self._latin(part))
        return terms
