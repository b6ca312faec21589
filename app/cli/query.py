"""kb search / ask / index."""

from __future__ import annotations

import sys

import click

from app.cli import Ctx, emit_json, pass_ctx
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


@click.command()
@click.argument("question")
@click.option("--user", help="Ask as this user (only their collections). Default: the operator (all).")
@click.option("--k", type=int, help="Passages given to the model (default from settings).")
@click.option("--show-reasoning", is_flag=True, help="Also print the model's reasoning block (DeepSeek-R1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end instead of streaming.")
@pass_ctx
def ask(ctx: Ctx, question: str, user: str | None, k: int | None, show_reasoning: bool, as_json: bool) -> None:
    """Answer a question from the documents, streaming it, with numbered citations.

    Every question is written to the audit log. When nothing relevant is found kb says it has no
    basis to answer and does not call the model.
    """
    c = ctx.container
    caller = qa.caller_for(c, user, "cli")
    result = None
    for ev in qa.ask(c, caller, question, k):
        if ev.kind == "done":
            result = ev.result
        elif as_json:
            continue
        elif ev.kind == "answer":
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif ev.kind == "reasoning" and show_reasoning:
            sys.stderr.write(click.style(ev.text, dim=True))
    assert result is not None
    if as_json:
        emit_json({
            "question": result.question, "answer": result.answer, "refused": result.refused,
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
