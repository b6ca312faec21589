"""Tables in a PDF text layer, found from PDFium's character boxes and written as Markdown rows.

Why our own finder and not pdfplumber or camelot: measured on the fixtures' PDF tables, pdfplumber's
text strategy glued words together ("Layoutsofmodernscientificdocuments") and split header cells
across columns, and its line strategy finds nothing in tables ruled only above and below (the usual
journal style); both re-parse the file with pdfminer, a second PDF engine. PDFium already holds every
character with its box, so the columns can be read off where the gaps are.

How: characters become words, words on one baseline become a line, and a line splits into cells
where the gap between words is wider than the line's height (word spaces are a third of it). A run of
at least three lines with two or more cells whose cells stack into common columns is a table; its
first row is the header. Turned characters are left out. A line that fills less than half the
columns right under another (a header or cell wrapped onto a second line) joins the row above. Two
columns or more of prose side by side (a multi-column page, text boxes) are not a table.

Pages are screened first from PDFium's text rectangles, which cost a fraction of a millisecond: only
a page with at least three lines showing a wide gap (and not just a two-column gutter) is looked at
character by character, so text PDFs without tables cost what they did.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ingest.parsers.base import markdown_table

MIN_ROWS = 3  # header plus two rows
GAP = 1.0  # a gap wider than this many line heights separates cells
WRAP_GAP = 1.6  # a sparse line at most this many line heights under the row above continues it


@dataclass
class _Word:
    x0: float
    x1: float
    y0: float
    y1: float
    text: str
    chars: list[int] = field(default_factory=list)
    parts: list[_Word] = field(default_factory=list)  # a cell's words

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass
class _Line:
    words: list[_Word]
    cells: list[_Word] = field(default_factory=list)  # words merged at small gaps

    @property
    def top(self) -> float:
        return max(w.y1 for w in self.words)

    @property
    def bottom(self) -> float:
        return min(w.y0 for w in self.words)

    @property
    def height(self) -> float:
        return statistics.median(w.height for w in self.words)


@dataclass
class Table:
    rows: list[list[str]]
    chars: set[int]  # character indices of the page the table covers
    first_char: int

    @property
    def markdown(self) -> str:
        return markdown_table(self.rows)


def _lines_with_gaps(textpage, page_width: float) -> int:
    """How many lines of the page's text rectangles have a gap wider than their height (cheap screen).
    A line of two wide runs (over a quarter of the page each) is two columns of prose, not counted."""
    rects = [textpage.get_rect(i) for i in range(textpage.count_rects())]
    rects.sort(key=lambda r: (-(r[1] + r[3]) / 2, r[0]))
    lines: list[list[tuple[float, float, float, float]]] = []
    for r in rects:
        centre = (r[1] + r[3]) / 2
        if lines and lines[-1][0][1] - 1 <= centre <= lines[-1][0][3] + 1:
            lines[-1].append(r)
        else:
            lines.append([r])
    count = 0
    for line in lines:
        line.sort(key=lambda r: r[0])
        height = max(r[3] - r[1] for r in line)
        runs: list[list[float]] = []
        for r in line:
            if runs and r[0] - runs[-1][1] <= GAP * height:
                runs[-1][1] = max(runs[-1][1], r[2])
            else:
                runs.append([r[0], r[2]])
        if len(runs) >= 2 and not (len(runs) == 2 and all(b - a > page_width / 4 for a, b in runs)):
            count += 1
    return count


def _chars(textpage) -> list[tuple[int, str, tuple[float, float, float, float]]]:
    """Every upright character with its box; turned text (a margin stamp up the side) is left out.
    PDFium's C calls are made directly with one reused rectangle: three times faster than the wrapper."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    raw, rect = textpage.raw, pdfium_c.FS_RECTF()
    angle, unicode, box = pdfium_c.FPDFText_GetCharAngle, pdfium_c.FPDFText_GetUnicode, \
        pdfium_c.FPDFText_GetLooseCharBox
    ref = ctypes.byref(rect)
    out = []
    for i in range(pdfium_c.FPDFText_CountChars(raw)):
        if abs(angle(raw, i)) > 0.05 or not box(raw, i, ref):
            continue
        out.append((i, chr(unicode(raw, i)), (rect.left, rect.bottom, rect.right, rect.top)))
    return out


def _unicode(textpage, i: int) -> int:
    import pypdfium2.raw as pdfium_c

    return pdfium_c.FPDFText_GetUnicode(textpage.raw, i)


def _words(chars) -> list[_Word]:
    """Runs of visible characters, contiguous in the stream and on the page."""
    words: list[_Word] = []
    cur: _Word | None = None
    for i, ch, (x0, y0, x1, y1) in chars:
        if ch.isspace() or ch == "\x00" or x1 <= x0 and y1 <= y0:
            cur = None
            continue
        if cur is not None:
            h = max(cur.height, y1 - y0)
            same_line = y0 < cur.y1 and y1 > cur.y0
            # a ligature's second character shares the first one's box, so it may start inside the word
            if same_line and x0 >= cur.x0 - 0.1 and x0 - cur.x1 <= 0.25 * h:
                cur.x1, cur.y0, cur.y1 = max(cur.x1, x1), min(cur.y0, y0), max(cur.y1, y1)
                cur.text += ch
                cur.chars.append(i)
                continue
        cur = _Word(x0, x1, y0, y1, ch, [i])
        words.append(cur)
    return words


def _visual_lines(words: list[_Word]) -> list[_Line]:
    """Words grouped by the height of their centres, top of the page first; superscripts join their
    line. The band is the line's first word's, not the union of its words', so two text boxes side by
    side with different line pitches do not chain into one line."""
    lines: list[_Line] = []
    bands: list[tuple[float, float]] = []
    for w in sorted(words, key=lambda w: -(w.y0 + w.y1) / 2):
        centre = (w.y0 + w.y1) / 2
        for k in range(len(lines) - 1, max(len(lines) - 4, -1), -1):
            c, h = bands[k]
            if abs(centre - c) <= 0.5 * max(h, w.height):
                lines[k].words.append(w)
                break
        else:
            lines.append(_Line([w]))
            bands.append((centre, w.height))
    for line in lines:
        line.words.sort(key=lambda w: w.x0)
        h = line.height
        cells: list[list[_Word]] = []
        for w in line.words:
            if cells and w.x0 - cells[-1][-1].x1 <= GAP * h:
                cells[-1].append(w)
            else:
                cells.append([w])
        line.cells = [_merge(c, h) for c in cells]
    lines.sort(key=lambda ln: -ln.top)
    return lines


def _merge(words: list[_Word], height: float) -> _Word:
    """Words as one cell: joined by spaces, except between Chinese characters and before a superscript."""
    text = words[0].text
    for prev, w in zip(words, words[1:], strict=False):
        glued = _cjk(prev.text[-1]) and _cjk(w.text[0]) or w.height < 0.75 * height
        text += ("" if glued else " ") + w.text
    cell = _Word(min(w.x0 for w in words), max(w.x1 for w in words), min(w.y0 for w in words),
                 max(w.y1 for w in words), text, [i for w in words for i in w.chars])
    cell.parts = words
    return cell


def _cjk(ch: str) -> bool:
    """Chinese and Japanese characters, written without spaces (Korean has spaces between words)."""
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" \
        or "\uff00" <= ch <= "\uffef"


def _columns(lines: list[_Line]) -> list[tuple[float, float]]:
    """Column spans: the x-intervals of the cells of multi-cell lines, overlapping ones merged. The
    header is left out when the body alone gives two columns or more: a header cell set tight
    against its neighbour ("Base Model1 Large Model") would otherwise merge two columns."""
    body = _spans([ln for ln in lines[1:] if len(ln.cells) >= 2])
    return body if len(body) >= 2 else _spans([ln for ln in lines if len(ln.cells) >= 2])


def _spans(lines: list[_Line]) -> list[tuple[float, float]]:
    spans = sorted((c.x0, c.x1) for ln in lines for c in ln.cells)
    cols: list[list[float]] = []
    for a, b in spans:
        if cols and a <= cols[-1][1]:
            cols[-1][1] = max(cols[-1][1], b)
        else:
            cols.append([a, b])
    return [(a, b) for a, b in cols]


def _column_of(cell: _Word, cols: list[tuple[float, float]]) -> int:
    overlaps = [min(cell.x1, b) - max(cell.x0, a) for a, b in cols]
    best = max(range(len(cols)), key=lambda k: overlaps[k])
    if overlaps[best] > 0:
        return best
    centre = (cell.x0 + cell.x1) / 2
    return min(range(len(cols)), key=lambda k: abs((cols[k][0] + cols[k][1]) / 2 - centre))


def _split(cell: _Word, cols: list[tuple[float, float]], height: float) -> list[_Word]:
    """A cell that reaches over two columns, split between them at its words."""
    groups: dict[int, list[_Word]] = {}
    for w in cell.parts or [cell]:
        groups.setdefault(_column_of(w, cols), []).append(w)
    if len(groups) == 1:
        return [cell]
    return [_merge(ws, height) for _k, ws in sorted(groups.items())]


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Runs of lines that may be a table: multi-cell lines, with single lines between them when
    the gaps stay small (a wrapped cell), cut at wide vertical gaps."""
    blocks: list[list[_Line]] = []
    cur: list[_Line] = []
    for i, line in enumerate(lines):
        multi = len(line.cells) >= 2
        near = bool(cur) and cur[-1].bottom - line.top <= 2.5 * max(line.height, cur[-1].height)
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        bridge = (not multi and cur and near and nxt is not None and len(nxt.cells) >= 2
                  and line.bottom - nxt.top <= 2.5 * max(line.height, nxt.height))
        if multi and (near or not cur) or bridge:
            cur.append(line)
        else:
            if cur:
                blocks.append(cur)
            cur = [line] if multi else []
    if cur:
        blocks.append(cur)
    return blocks


def _table(block: list[_Line]) -> Table | None:
    multi = [ln for ln in block if len(ln.cells) >= 2]
    if len(multi) < MIN_ROWS:
        return None
    cols = _columns(block)
    if len(cols) < 2:
        return None
    rows: list[list[str]] = []
    prev: _Line | None = None
    for line in block:
        row = [""] * len(cols)
        for cell in line.cells:
            for piece in _split(cell, cols, line.height):
                k = _column_of(piece, cols)
                row[k] = f"{row[k]} {piece.text}".strip()
        filled = sum(1 for v in row if v)
        wrapped = (rows and prev is not None and filled * 2 < len(cols)
                   and prev.bottom - line.top <= WRAP_GAP * max(line.height, prev.height))
        if wrapped:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], row, strict=True)]
        else:
            rows.append(row)
        prev = line
    if len(rows) < MIN_ROWS:
        return None
    full = sum(1 for r in rows if sum(1 for v in r if v) >= 2)
    if full * 5 < len(rows) * 3:  # most rows must fill two columns or more
        return None
    if sum(_words_per_cell(rows, k) >= 3 for k in range(len(cols))) >= 2:
        return None  # columns of prose side by side (a multi-column page, text boxes), not a table
    chars = {i for ln in block for c in ln.cells for i in c.chars}
    return Table(rows, chars, min(chars))


def _words_per_cell(rows: list[list[str]], k: int) -> float:
    cells = [r[k] for r in rows if r[k]]
    return statistics.mean(len(v.split()) for v in cells) if cells else 0.0


def find_tables(textpage, page_width: float = 612.0) -> list[Table]:
    """The tables of one page (a pypdfium2 PdfTextPage), in the order their text starts."""
    if _lines_with_gaps(textpage, page_width) < MIN_ROWS:
        return []
    lines = _visual_lines(_words(_chars(textpage)))
    tables = [t for t in map(_table, _blocks(lines)) if t is not None]
    return sorted(tables, key=lambda t: t.first_char)


def page_text(textpage, page_width: float = 612.0) -> tuple[str, int] | None:
    """The page's text with each table replaced by its Markdown rows, where its text began, and the
    number of tables; None when the page holds no table (the caller keeps PDFium's own text)."""
    tables = find_tables(textpage, page_width)
    if not tables:
        return None
    dropped = set().union(*(t.chars for t in tables))
    starts = {t.first_char: t for t in tables}
    out: list[str] = []
    for i in range(textpage.count_chars()):
        if i in starts:
            out.append("\n\n" + starts[i].markdown + "\n\n")
        if i not in dropped:
            out.append(chr(_unicode(textpage, i)))
    text = "".join(out)
    # what is left of a table's lines is the white space between its cells
    kept = [ln for ln in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(ln if ln.strip() else "" for ln in kept), len(tables)
