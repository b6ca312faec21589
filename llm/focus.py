"""Passage focus: of each retrieved passage, the sentences that bear on the question, so the prompt is short.

On a CPU a 1.5B model reads the prompt at about 80 tokens/s (docs/benchmarks.md), so five whole 200-token
chunks cost ten seconds before the first word, and most of that text is about something else: a question is
usually answered by a sentence or two of a passage. :func:`focus_passages` keeps, per passage, the sentences
sharing the question's rarer terms (a term found in few of the sentences on offer weighs more), then their
neighbours, nearest first, up to a token budget, in document order with "…" where text is left out. The
person asking still sees, and citations still point at, the whole passage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from app.text import split_sentences

TokenCounter = Callable[[str], int]
Terms = Callable[[str], Iterable[str]]
GAP = " … "


def _weights(question_terms: set[str], sentences: Sequence[set[str]]) -> dict[str, float]:
    """Inverse sentence frequency of each question term among the sentences on offer (local IDF)."""
    df = Counter(t for s in sentences for t in s & question_terms)
    n = len(sentences)
    return {t: math.log(1 + n / df[t]) for t in df}


def focus_passages(question: str, texts: Sequence[str], terms: Terms, count: TokenCounter,
                   budget: int, first_budget: int | None = None) -> list[str]:
    """Each text cut to at most ``budget`` tokens (``first_budget`` for the first, the best-ranked) of the
    sentences most about ``question``; a text that fits, or is one sentence, is kept whole (the prompt
    truncates what still does not fit). ``budget`` <= 0 keeps every text whole."""
    if budget <= 0:
        return list(texts)
    q = set(terms(question))
    split = [split_sentences(t) for t in texts]
    bags = [[set(terms(t[a:b])) for a, b in spans] for t, spans in zip(texts, split, strict=True)]
    weights = _weights(q, [s for b in bags for s in b])
    out = []
    for i, (text, spans, bag) in enumerate(zip(texts, split, bags, strict=True)):
        limit = first_budget if i == 0 and first_budget else budget
        if len(spans) <= 1 or count(text) <= limit:
            out.append(text)
            continue
        scores = [sum(weights.get(t, 0.0) for t in s) for s in bag]
        out.append(_focus(text, spans, scores, count, limit))
    return out


def _focus(text: str, spans: list[tuple[int, int]], scores: list[float], count: TokenCounter, budget: int) -> str:
    best = max(range(len(spans)), key=lambda j: (scores[j], -j))
    # sentences with a matching term first (strongest first), then the others nearest the best one
    order = sorted(range(len(spans)), key=lambda j: (-scores[j], abs(j - best), j))
    kept: set[int] = set()
    left = budget
    for j in order:
        a, b = spans[j]
        cost = count(text[a:b]) + 1  # + the joining space or gap mark
        if cost <= left:
            kept.add(j)
            left -= cost
        elif not kept:  # even the best sentence is over budget: the prompt's truncation cuts it
            kept.add(j)
            break
    return _render(text, spans, sorted(kept))


def _render(text: str, spans: list[tuple[int, int]], kept: list[int]) -> str:
    """The kept sentences in document order; neighbours keep the text between them, gaps show as "…"."""
    parts: list[str] = []
    if kept[0] > 0:
        parts.append(GAP.lstrip())
    run_start, prev = kept[0], kept[0]
    for j in [*kept[1:], None]:
        if j is not None and j == prev + 1:
            prev = j
            continue
        parts.append(text[spans[run_start][0]:spans[prev][1]])
        if j is not None:
            parts.append(GAP)
            run_start = prev = j
    if kept[-1] < len(spans) - 1:
        parts.append(GAP.rstrip())
    return "".join(parts).strip()
