"""`kb pii scan` helpers: read texts (plain text or JSON lines with a ``text`` field) and report what
the scrubber finds in each."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from app.errors import KbError
from ingest.types import Scrubber

_BATCH = 64


def scan_texts(scrubber: Scrubber, texts: Iterable[str]) -> Iterator[dict]:
    """One dict per text: ``entities`` (type/start/end/score) and the ``redacted`` text."""
    it = iter(texts)
    while batch := list(islice(it, _BATCH)):
        found = scrubber.analyze_many(batch)
        for text, entities in zip(batch, found, strict=True):
            from ingest.pii.redact import redact

            yield {
                "entities": [{"type": e.type, "start": e.start, "end": e.end, "score": e.score} for e in entities],
                "redacted": redact(text, entities),
            }


def read_plain_text(path: str | Path) -> Iterator[str]:
    """One text per non-empty line."""
    with _open(path) as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")


def read_jsonl(path: str | Path, field: str = "text") -> Iterator[str]:
    with _open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise KbError(f"{path}, line {n}: not valid JSON ({exc.msg}). Each line must be one object.") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise KbError(f"{path}, line {n}: no string field {field!r}. Each line needs {{\"{field}\": \"...\"}}.")
            yield row[field]


def read_texts(path: str | Path) -> Iterator[str]:
    """JSON lines for .jsonl/.ndjson files, one text per line otherwise."""
    if Path(path).suffix.lower() in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    return read_plain_text(path)


def _open(path: str | Path):
    p = Path(path)
    if not p.is_file():
        raise KbError(f"No file at {p}: pass a text file (one text per line) or a .jsonl file with a text field.")
    return p.open(encoding="utf-8")
