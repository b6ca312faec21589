"""kb eval retrieval / pii."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli import Ctx, emit_json, pass_ctx


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval and PII scrubbing on labelled data."""


@eval_group.command("retrieval")
@click.option("--corpus", type=click.Path(exists=True, path_type=Path), required=True, help="BEIR corpus.jsonl")
@click.option("--queries", type=click.Path(exists=True, path_type=Path), required=True, help="BEIR queries.jsonl")
@click.option("--qrels", type=click.Path(exists=True, path_type=Path), required=True, help="qrels .tsv (header line)")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["hybrid", "dense", "bm25", "all"]),
              default=["all"], show_default=True, help="Retrieval mode(s) to score; repeatable.")
@click.option("--limit-docs", type=int, help="Only the first N documents (and the queries they answer).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def eval_retrieval(ctx: Ctx, corpus: Path, queries: Path, qrels: Path, modes: tuple[str, ...],
                   limit_docs: int | None, as_json: bool) -> None:
    """Ingest a BEIR corpus through the real pipeline into a temporary data dir (PII scrubbing on, as users
    run it), run every query through the real search, and print nDCG@10, recall@100 and MRR@10."""
    from app.services import evaluation
    from retrieval.metrics import load_beir_corpus, load_beir_queries, load_qrels

    docs = load_beir_corpus(corpus)
    rels = load_qrels(qrels)
    if limit_docs:
        docs = dict(list(docs.items())[:limit_docs])
        rels = {q: r for q, r in rels.items() if any(d in docs for d in r)}
    chosen = ["dense", "bm25", "hybrid"] if "all" in modes else list(dict.fromkeys(modes))
    bars: dict[str, object] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if as_json:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = click.progressbar(length=total, label=f"{stage:8}", show_pos=True, show_eta=True)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done == total:
            bar.__exit__(None, None, None)

    out = evaluation.run(ctx.container.settings, docs, load_beir_queries(queries), rels, chosen, progress=progress)
    if as_json:
        emit_json(out)
        return
    click.echo(f"\n{out['documents']} documents -> {out['chunks']} chunks in {out['ingest_seconds']} s "
               f"(PII scrubbing {'on' if out['pii_scrubbing'] else 'off'}); {out['queries']} queries")
    click.echo(f"{'mode':8} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7}")
    for mode, m in out["modes"].items():
        click.echo(f"{mode:8} {m['ndcg@10']:8.4f} {m['recall@100']:7.4f} {m['mrr@10']:7.4f} {m['p50_ms']:7}")


@eval_group.command("pii")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["presidio", "cluener"]), required=True,
              help="presidio-research JSON, or CLUENER2020 JSON lines.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def eval_pii(ctx: Ctx, file: Path, fmt: str, as_json: bool) -> None:
    """Precision, recall and F2 per entity type and overall (span overlap), mapping the dataset's labels to ours."""
    from ingest.pii.evaluate import evaluate, format_report

    result = evaluate(ctx.container.scrubber, file, fmt)  # type: ignore[arg-type]
    if as_json:
        emit_json(result)
    else:
        click.echo(format_report(result))


COMMANDS = [eval_group]
