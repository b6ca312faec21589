"""Sentence spans, shared by chunking (ingest/) and by the prompt's passage focus (llm/)."""

from __future__ import annotations

import re

# A sentence ends after CJK terminators (no space needed), or after . ! ? followed by white space,
# or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.!?][\"')\]”’])\s+|(?<=[.!?])\s+|\n\s*\n")


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
