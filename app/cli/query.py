"""kb search / ask / index."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from app.cli import Ctx, emit_json, pass_ctx
from app.errors import KbError
from app.services import qa
from app.services import search as search_svc


@click.command()
@click.argument("query")
@click.option("--k", default=5, show_default=True, help="How many chunks to return.")
@click.option("--user", help="Search as this user (only their collections). Default: the operator (all).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "bm25"]), help="Override the retrieval mode.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def search(ctx: Ctx, query: str, k: int, user: str | None, mode: str | None, as_json: bool) -> None:
    """Show the chunks a question would retrieve, with document, position, score and text."""
    c = ctx.container
    caller = qa.caller_for(c, user, "cli")
    passages = search_svc.search(c, caller, query, k, mode=mode)
    if as_json:
        emit_json([p.__dict__ for p in passages])
        return
    if not passages:
        click.echo("No passages found" + (" in the collections this user can read." if user else "."))
    for i, p in enumerate(passages, 1):
        where = f" ({p.position})" if p.position else ""
        click.echo(click.style(f"[{i}] {p.source}{where}", bold=True)
                   + f"  score {p.score:.3f}  collection {p.collection}  chunk {p.chunk_id}")
        snippet = " ".join(p.text.split())
        click.echo(f"    {snippet[:400]}{'…' if len(snippet) > 400 else ''}")


def _read_history(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[Any] | None:
    """--history FILE ('-' for standard input): earlier turns as OpenAI-style messages JSON."""
    if value is None:
        return None
    name = "standard input" if value == "-" else value
    try:
        text = sys.stdin.read() if value == "-" else Path(value).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise click.BadParameter(f"{name}: no such file.") from None
    except IsADirectoryError:
        raise click.BadParameter(f"{name} is a folder, not a JSON file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{name} cannot be read: {exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                                 f"{exc.colno}).") from None
    try:
        return [{"role": m.role, "content": m.content} for m in qa.parse_history(data)]
    except KbError as exc:
        raise click.BadParameter(f"{name}: {exc} Expected e.g. "
                                 '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}].'
                                 ) from None


@click.command()
@click.argument("question")
@click.option("--user", help="Ask as this user (only their collections). Default: the operator (all).")
@click.option("--k", type=int, help="Passages given to the model (default from settings).")
@click.option("--show-reasoning", is_flag=True, help="Also print the model's reasoning block (DeepSeek-R1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end instead of streaming.")
@click.option("--history", "history", metavar="FILE", callback=_read_history,
              help="Earlier turns of the conversation as OpenAI-style messages JSON (a list of "
                   '{"role": "user"|"assistant", "content": ...}, or an object with "messages"); '
                   "'-' reads standard input. A follow-up is rewritten into a standalone question for "
                   "the search.")
@pass_ctx
def ask(ctx: Ctx, question: str, user: str | None, k: int | None, show_reasoning: bool, as_json: bool,
        history: list[Any] | None) -> None:
    """Answer a question from the documents, streaming it, with numbered citations.

    Every question is written to the audit log. When nothing relevant is found kb says it has no
    basis to answer and does not call the model.
    """
    c = ctx.container
    caller = qa.caller_for(c, user, "cli")
    result = None
    for ev in qa.ask(c, caller, question, k, history=history):
        if ev.kind == "done":
            result = ev.result
        elif as_json:
            continue
        elif ev.kind == "condensed" and ev.text != question.strip():
            click.echo(click.style(f"Searched for: {ev.text}", dim=True), err=True)
        elif ev.kind == "answer":
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif ev.kind == "reasoning" and show_reasoning:
            sys.stderr.write(click.style(ev.text, dim=True))
    assert result is not None
    if as_json:
        emit_json({
            "question": result.question, "condensed_question": result.condensed,
            "condense_method": result.condense_method, "answer": result.answer, "refused": result.refused,
            "refusal_reason": result.refusal_reason, "citations": result.citations,
            "invalid_citations": result.invalid_citations,
            "passages": [{"n": i + 1, "chunk_id": p.chunk_id, "document_id": p.document_id, "source": p.source,
                          "title": p.title, "position": p.position, "score": p.score, "text": p.text}
                         for i, p in enumerate(result.passages)],
            "timings": result.timings, "tokens": result.tokens, "model": result.model,
            "model_sha256": result.model_sha256, "audit_seq": result.audit_seq,
        })
        return
    click.echo()
    scrubbed = qa.scrubbed_in(result.answer)
    if scrubbed:
        click.echo(click.style(f"({', '.join(f'<{k}>' for k in scrubbed)}: personal data removed from the documents "
                               "when they were indexed; an admin can keep names and addresses in collections of "
                               "public documents: `kb collections pii NAME identifiers`)", dim=True))
    if result.citations:
        click.echo()
        for cit in result.citations:
            click.echo(f"[{cit.n}] {cit.source}" + (f" ({cit.position})" if cit.position else ""))
    elif not result.refused and result.passages:
        click.echo(click.style("\n(the answer cites no passage; sources consulted:)", dim=True))
        for i, p in enumerate(result.passages, 1):
            click.echo(click.style(f"  [{i}] {p.source}", dim=True))
    t = result.timings
    click.echo(click.style(f"\nretrieval {t.get('retrieval_ms')} ms, first token {t.get('first_token_ms')} ms, "
                           f"{t.get('tokens_per_s')} tok/s", dim=True), err=True)


@click.group()
def index() -> None:
    """The search indexes (derived data, rebuildable from the database)."""


@index.command("rebuild")
@pass_ctx
def index_rebuild(ctx: Ctx) -> None:
    """Recreate the dense and BM25 indexes from the chunks table and seal a new snapshot."""
    with click.progressbar(length=0, label="rebuilding", show_pos=True) as bar:
        n = search_svc.rebuild_index(ctx.container, ctx.caller, progress=bar.update)
    click.echo(f"index rebuilt: {n} chunks")


COMMANDS = [search, ask, index]
