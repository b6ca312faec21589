"""Structure-keeping chunking measured in the embedder's own tokens.

Text is cut at sentence ends (Latin ``.!?`` and CJK ``。！？；`` plus paragraph breaks), sentences
are packed up to ``size`` tokens with ``overlap`` tokens carried into the next chunk, and a chunk
does not cross a page, sheet or heading once it holds half its budget, so a citation points at one
place. A sentence longer than the budget is cut at token boundaries.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ingest.types import Section

TokenSpans = Callable[[str], list[tuple[int, int]]]

# A sentence ends after CJK terminators (no space needed), or after . ! ? followed by white space,
# or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.!?][\"')\]”’])\s+|(?<=[.!?])\s+|\n\s*\n")


@dataclass
class ChunkText:
    idx: int
    text: str
    n_tokens: int
    page: int | None = None
    sheet: str | None = None
    heading: str | None = None


@dataclass
class _Unit:
    text: str
    tokens: int
    where: tuple[int | None, str | None, str | None]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (white space between them dropped)."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start()
        if end > start and text[start:end].strip():
            spans.append((start, end))
        start = m.end()
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _units(section: Section, token_spans: TokenSpans, size: int) -> Iterable[_Unit]:
    text = section.text
    spans = token_spans(text)
    starts = [s for s, _ in spans]
    where = (section.page, section.sheet, section.heading)
    for a, b in split_sentences(text):
        first, last = bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)
        n = last - first
        if n <= size:
            yield _Unit(text[a:b].strip(), max(n, 1), where)
            continue
        for i in range(first, last, size):  # an over-long sentence: cut at token boundaries
            j = min(i + size, last)
            piece_end = spans[j - 1][1] if j - 1 < len(spans) else b
            yield _Unit(text[spans[i][0]:piece_end].strip(), j - i, where)


def chunk_sections(sections: list[Section], token_spans: TokenSpans, size: int = 200, overlap: int = 30,
                   title: str | None = None) -> list[ChunkText]:
    """Pack sentences of all sections into chunks of at most ``size`` tokens (plus the heading line)."""
    if size < 8 or not 0 <= overlap < size:
        raise ValueError("chunk size must be >= 8 tokens and overlap smaller than the size")
    chunks: list[ChunkText] = []
    current: list[_Unit] = []

    def flush(keep_overlap: bool) -> list[_Unit]:
        if not current:
            return []
        page, sheet, heading = current[0].where
        body = " ".join(u.text for u in current)
        label = heading or (title if not chunks else None)
        text = f"{label}\n{body}" if label and label not in body[: len(label) + 8] else body
        chunks.append(ChunkText(len(chunks), text, sum(u.tokens for u in current), page, sheet, heading))
        if not keep_overlap or overlap == 0:
            return []
        carried, total = [], 0
        for u in reversed(current):
            if total + u.tokens > overlap:
                break
            carried.insert(0, u)
            total += u.tokens
        return carried

    for section in sections:
        if not section.text.strip():
            continue
        for unit in _units(section, token_spans, size):
            used = sum(u.tokens for u in current)
            new_place = current and unit.where != current[-1].where
            if current and (used + unit.tokens > size or (new_place and used >= size // 2)):
                carried = flush(keep_overlap=not new_place)
                current = carried if carried and sum(u.tokens for u in carried) + unit.tokens <= size else []
            current.append(unit)
    flush(keep_overlap=False)
    return chunks
