"""Rows of cells -> sections, shared by the XLSX, XLS and CSV parsers.

A block of rows (separated from the next by an empty row) whose first row is all labels is treated
as a table with a header: each row becomes ``header: value; header: value`` so a chunk cut from the
middle of a sheet still says what its numbers mean. Other rows are tab-joined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from ingest.types import Section

ROWS_PER_SECTION = 50  # a sheet is cut into blocks so one section never becomes a whole workbook


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _is_header(row: list[str], next_row: list[str] | None) -> bool:
    labels = [c for c in row if c]
    if len(labels) < 2 or next_row is None:
        return False
    return all(not _is_number(c) for c in labels) and len(set(labels)) == len(labels)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
    except ValueError:
        return False
    return True


def _blocks(rows: Iterable[Sequence[object]]) -> Iterable[list[list[str]]]:
    block: list[list[str]] = []
    for raw in rows:
        row = [cell_text(v) for v in raw]
        while row and not row[-1]:
            row.pop()
        if not row:
            if block:
                yield block
                block = []
            continue
        block.append(row)
    if block:
        yield block


def rows_to_sections(rows: Iterable[Sequence[object]], sheet: str | None = None) -> list[Section]:
    sections: list[Section] = []
    for block in _blocks(rows):
        caption: list[str] = []
        if len([c for c in block[0] if c]) == 1 and len(block) > 2 and _is_header(block[1], block[2]):
            caption, block = [block[0][-1]], block[1:]  # a title line above the table's header row
        header = block[0] if _is_header(block[0], block[1] if len(block) > 1 else None) else None
        body = block[1:] if header else block
        lines: list[str] = caption + (["\t".join(header)] if header else [])
        for row in body:
            if header:
                pairs = [
                    f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {v}"
                    for i, v in enumerate(row)
                    if v
                ]
                lines.append("; ".join(pairs))
            else:
                lines.append("\t".join(row))
            if len(lines) >= ROWS_PER_SECTION:
                sections.append(Section(text="\n".join(lines), sheet=sheet))
                lines = []
        if lines:
            sections.append(Section(text="\n".join(lines), sheet=sheet))
    return sections
