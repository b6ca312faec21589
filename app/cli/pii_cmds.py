"""kb pii scan."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from app.cli import Ctx, pass_ctx


@click.group()
def pii() -> None:
    """Find and redact personal data (what ingestion does before chunking)."""


@pii.command("scan")
@click.argument("file", default="-")
@click.option("--jsonl", "jsonl", is_flag=True, help="Input is JSON lines with a `text` field.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input line.")
@pass_ctx
def pii_scan(ctx: Ctx, file: str, jsonl: bool, as_json: bool) -> None:
    """Scan FILE (or - for stdin) and print the entities found and the redacted text.

    Plain text is scanned as a whole; with --jsonl each line's `text` is one input.
    """
    from app.errors import KbError
    from ingest.pii.scan import read_jsonl, scan_texts

    if jsonl:
        texts = read_jsonl(file)
    else:
        try:
            texts = [sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")]
        except (OSError, UnicodeDecodeError) as exc:
            raise KbError(f"Cannot read {file}: {exc}") from None
    counts: Counter[str] = Counter()
    for item in scan_texts(ctx.container.scrubber, texts):
        counts.update(e["type"] for e in item["entities"])
        if as_json:
            click.echo(json.dumps(item, ensure_ascii=False))
            continue
        for e in item["entities"]:
            click.echo(f"{e['type']:12} {e['start']:>6}-{e['end']:<6} score {e['score']:.2f}")
        click.echo(item["redacted"])
    if not as_json:  # one line per type found, so a reviewer sees what kinds of data the file holds
        click.echo("found: " + (", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "nothing"))


COMMANDS = [pii]
