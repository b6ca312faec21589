"""PPTX with python-pptx: one section per slide (slide number as page), speaker notes included.

Why python-pptx: the maintained MIT-licensed PresentationML reader; it exposes titles, grouped
shapes, tables and notes, which is all the text a deck has.
"""

from __future__ import annotations

import io

from ingest.parsers.base import finish, guard, markdown_table
from ingest.types import ParsedDocument, Section


def _shape_lines(shapes) -> list[str]:
    lines: list[str] = []
    for shape in shapes:
        if getattr(shape, "shapes", None) is not None and shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            lines.extend(_shape_lines(shape.shapes))
        elif getattr(shape, "has_table", False) and shape.has_table:
            table = markdown_table([[c.text for c in row.cells] for row in shape.table.rows])
            if table:
                lines.extend(["", table, ""])
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            text = shape.text_frame.text.strip()
            if text:
                lines.append(text)
    return lines


class PptxParser:
    formats = ("pptx",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import pptx

        with guard("pptx"):
            deck = pptx.Presentation(io.BytesIO(data))
            sections = []
            for number, slide in enumerate(deck.slides, start=1):
                title_shape = slide.shapes.title
                heading = title_shape.text.strip() if title_shape is not None and title_shape.has_text_frame else None
                lines = _shape_lines(slide.shapes)
                if slide.has_notes_slide:
                    notes = slide.notes_slide.notes_text_frame
                    if notes is not None and notes.text.strip():
                        lines.append("Notes: " + notes.text.strip())
                sections.append(Section(text="\n".join(lines), page=number, heading=heading or None))
            title = deck.core_properties.title or None
        return finish(sections, "pptx", title=title, metadata={"slides": str(len(sections))})
