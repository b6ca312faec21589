"""Structure-keeping chunking measured in the embedder's own tokens.

Text is cut at sentence ends (Latin ``.!?`` and CJK ``。！？；`` plus paragraph breaks), sentences
are packed up to ``size`` tokens with ``overlap`` tokens carried into the next chunk, and a chunk
does not cross a page, sheet or heading once it holds half its budget, so a citation points at one
place. A sentence longer than the budget is cut at token boundaries.

Markdown tables (``| a | b |`` lines under a ``| --- |`` separator, as the parsers write them) are cut
at rows, never inside one, and every chunk that holds rows of a table starts them with the table's
header line, so a question about one cell finds its row and the model sees the column names.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.text import split_sentences
from ingest.types import Section

TokenSpans = Callable[[str], list[tuple[int, int]]]

# A Markdown table: a header row, the separator row, then body rows; each line starts and ends with a pipe.
_TABLE = re.compile(r"(?m)^(\|[^\n]*\|)[ \t]*\n(\|[ \t:|-]*-[ \t:|-]*\|)[ \t]*(?:\n|$)((?:\|[^\n]*\|[ \t]*(?:\n|$))*)")


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
    header: str | None = None  # a table row: its table's header and separator lines
    header_tokens: int = 0


def _pieces(text: str) -> Iterable[tuple[int, int, tuple[int, int] | None]]:
    """(start, end, header span) of each sentence, and of each table row (with its header's span)."""
    pos = 0
    for m in _TABLE.finditer(text):
        for a, b in split_sentences(text[pos:m.start()]):
            yield pos + a, pos + b, None
        header = (m.start(1), m.end(2))
        body_start = m.start(3)
        rows = [(body_start + r.start(), body_start + r.end()) for r in re.finditer(r"[^\n]+", m.group(3))
                if r.group().strip()]
        if not rows:  # a header without rows is text like any other
            yield m.start(1), m.end(2), None
        for a, b in rows:
            yield a, b, header
        pos = m.end()
    for a, b in split_sentences(text[pos:]):
        yield pos + a, pos + b, None


def _units(section: Section, token_spans: TokenSpans, size: int) -> Iterable[_Unit]:
    text = section.text
    spans = token_spans(text)
    starts = [s for s, _ in spans]
    where = (section.page, section.sheet, section.heading)

    def count(a: int, b: int) -> int:
        return bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)

    for a, b, head in _pieces(text):
        header = text[head[0]:head[1]].strip() if head else None
        header_tokens = min(count(*head), size // 2) if head else 0
        budget = size - header_tokens
        first, last = bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)
        n = last - first
        if n <= budget:
            yield _Unit(text[a:b].strip(), max(n, 1), where, header, header_tokens)
            continue
        for i in range(first, last, budget):  # an over-long sentence or row: cut at token boundaries
            j = min(i + budget, last)
            piece_end = spans[j - 1][1] if j - 1 < len(spans) else b
            yield _Unit(text[spans[i][0]:piece_end].strip(), j - i, where, header, header_tokens)


def _cost(units: list[_Unit]) -> int:
    """Tokens of the units plus one header per table they hold rows of (the header is repeated)."""
    headers = {u.header: u.header_tokens for u in units if u.header}
    return sum(u.tokens for u in units) + sum(headers.values())


def _body(units: list[_Unit]) -> str:
    """Units joined: sentences by a space, table rows by line breaks under their header."""
    out: list[str] = []
    prev: _Unit | None = None
    for u in units:
        if prev is not None:
            out.append("\n" if u.header or prev.header else " ")
        if u.header and (prev is None or prev.header != u.header):
            if prev is not None and not prev.header:
                out[-1] = "\n"
            out.append(u.header + "\n")
        out.append(u.text)
        prev = u
    return "".join(out)


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
        body = _body(current)
        label = heading or (title if not chunks else None)
        text = f"{label}\n{body}" if label and label not in body[: len(label) + 8] else body
        chunks.append(ChunkText(len(chunks), text, _cost(current), page, sheet, heading))
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
            used = _cost(current)
            new_place = current and unit.where != current[-1].where
            if current and (_cost([*current, unit]) > size or (new_place and used >= size // 2)):
                carried = flush(keep_overlap=not new_place)
                current = carried if carried and _cost([*carried, unit]) <= size else []
            current.append(unit)
    flush(keep_overlap=False)
    return chunks
