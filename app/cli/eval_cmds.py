"""kb eval retrieval / answers / pii."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from app.cli import Ctx, emit_json, pass_ctx
from app.services.users import PII_POLICIES


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval, answers and PII scrubbing on labelled data."""


def _progress_bars(quiet: bool):
    """A progress callback drawing one bar per stage on stderr (stdout stays the report)."""
    bars: dict[str, object] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if quiet or total <= 0:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = click.progressbar(length=total, label=f"{stage:8}", show_pos=True, show_eta=True,
                                                  file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done == total:
            bar.__exit__(None, None, None)

    return progress


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
    progress = _progress_bars(as_json)
    out = evaluation.run(ctx.container.settings, docs, load_beir_queries(queries), rels, chosen, progress=progress)
    if as_json:
        emit_json(out)
        return
    click.echo(f"\n{out['documents']} documents -> {out['chunks']} chunks in {out['ingest_seconds']} s "
               f"(PII scrubbing {'on' if out['pii_scrubbing'] else 'off'}); {out['queries']} queries")
    click.echo(f"{'mode':8} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7}")
    for mode, m in out["modes"].items():
        click.echo(f"{mode:8} {m['ndcg@10']:8.4f} {m['recall@100']:7.4f} {m['mrr@10']:7.4f} {m['p50_ms']:7}")


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _row(cells: list[str], widths: list[int]) -> str:
    """The first cell left-aligned, the others right-aligned."""
    return "  ".join(f"{c:>{w}}" if i else f"{c:{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


@eval_group.command("answers")
@click.option("--squad", "squad", type=click.Path(exists=True, path_type=Path),
              help="SQuAD-format file (SQuAD 2.0: unanswerable questions marked is_impossible).")
@click.option("--cmrc", "cmrc", type=click.Path(exists=True, path_type=Path),
              help="CMRC2018 file in SQuAD format (or its folder: the dev file is used).")
@click.option("--n", "n", type=click.IntRange(min=1), help="Questions to ask (stratified sample); default all.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the question sample, and of the model's sampling unless llm.seed is set (a rerun gives "
              "the same answers).")
@click.option("--model", "models", multiple=True,
              help="Model to answer with: a name from `kb models list` or a GGUF path. Repeat to compare "
              "models side by side over one ingestion. Default: the configured model.")
@click.option("--max-paragraphs", type=click.IntRange(min=1),
              help="Ingest only the sampled questions' paragraphs plus others up to this many (default: all).")
@click.option("--time-limit", type=click.FloatRange(min=0), metavar="MINUTES",
              help="Start no new question after this many minutes of asking; report those asked.")
@click.option("--pii", type=click.Choice(list(PII_POLICIES)), default="all", show_default=True,
              help="PII policy of the collection the paragraphs go into ('identifiers': names and addresses are "
              "kept, as an admin would choose for public documents).")
@click.option("--json", "as_json", is_flag=True, help="The report and every answer as JSON.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report with every answer as JSON to this file.")
@pass_ctx
def eval_answers(ctx: Ctx, squad: Path | None, cmrc: Path | None, n: int | None, seed: int,
                 models: tuple[str, ...], max_paragraphs: int | None, time_limit: float | None, pii: str,
                 as_json: bool, save: Path | None) -> None:
    """Ingest a SQuAD-format set's paragraphs through the real pipeline into a temporary data dir, ask
    sampled questions through the same service the UI uses, and report: accuracy on answerable questions
    (a gold answer in the answer, normalised), unanswerable questions declined, false refusals, whether the
    cited passage holds the gold answer, answers that repeat themselves, time to first token, tokens/s and
    time until the sources are shown."""
    from app.services import evaluation

    if bool(squad) == bool(cmrc):
        raise click.UsageError("Give exactly one of --squad FILE or --cmrc FILE.")
    qa_set = evaluation.load_squad(squad or cmrc)
    out = evaluation.run_answers(ctx.container.settings, qa_set, list(models), n=n, seed=seed,
                                 progress=_progress_bars(as_json), max_paragraphs=max_paragraphs,
                                 time_limit_s=None if time_limit is None else time_limit * 60, pii=pii)
    if save:
        save.write_text(json.dumps(out, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    if as_json:
        emit_json(out)
        return
    first = next(iter(out["models"].values()))
    click.echo(f"\n{out['set']}: {first['questions']} questions ({first['answerable']} answerable, "
               f"{first['unanswerable']} unanswerable; seed {out['seed']}) over {out['paragraphs']} paragraphs "
               f"-> {out['chunks']} chunks in {out['ingest_seconds']} s (PII scrubbing "
               f"{'on: ' + out['pii_policy'] if out['pii_scrubbing'] else 'off'}); {out['top_k']} passages per "
               "question")
    if out["stopped_early"]:
        click.echo(f"time limit reached: {first['questions']} of {out['sampled']} sampled questions asked "
                   f"in {out['asking_seconds']} s")
    cols = [("model", 28), ("accuracy", 8), ("unans.declined", 14), ("false refusals", 14),
            ("citation ok", 11), ("repeated", 8), ("TTFT p50", 8), ("TTFT p95", 8), ("tok/s", 6),
            ("sources p50", 11)]
    widths = [w for _, w in cols]
    click.echo(_row([name for name, _ in cols], widths))
    for label, m in out["models"].items():
        fr = m["false_refusals"]
        cells = [label[:28], _fmt(m["accuracy"]), _fmt(m["unanswerable_declined"]),
                 "-" if fr is None else f"{fr:.2f} ({_fmt(m['false_refusals_by_gate'])} gate)",
                 _fmt(m["citation_correct"]), str(m["repeated"]),
                 _fmt(m["first_token_s"]["p50"], ".1f") + " s", _fmt(m["first_token_s"]["p95"], ".1f") + " s",
                 _fmt(m["tokens_per_s"]["p50"], ".1f"), _fmt(m["sources_ms"]["p50"], ".0f") + " ms"]
        click.echo(_row(cells, widths))
    if first["answerable"]:  # where the answers were lost before the model wrote anything
        click.echo(f"gold answer in the stored text (after PII scrubbing) {_fmt(first['gold_indexed'])}, "
                   f"in the passages retrieved {_fmt(first['gold_retrieved'])}, "
                   f"in what the model read {_fmt(first['gold_read'])}")


@eval_group.command("pii")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["presidio", "cluener"]), required=True,
              help="presidio-research JSON, or CLUENER2020 JSON lines.")
@click.option("--split", type=click.Choice(["all", "held-aside"]), default="all", show_default=True,
              help="CLUENER only: held-aside = the tenth of train.jsonl the Chinese name model was not trained on.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def eval_pii(ctx: Ctx, file: Path, fmt: str, split: str, as_json: bool) -> None:
    """Precision, recall and F2 per entity type and overall (span overlap), mapping the dataset's labels to ours.

    CLUENER: name -> PERSON; an address that finds a household (a street, village or building, or an
    area with a house number) -> ADDRESS; a bare place ("香港", "海淀区") -> LOCATION, reported but not
    claimed unless KB_PII__ENTITIES names it."""
    from ingest.pii.evaluate import evaluate, format_report

    result = evaluate(ctx.container.scrubber, file, fmt, split)  # type: ignore[arg-type]
    if as_json:
        emit_json(result)
    else:
        click.echo(format_report(result))


COMMANDS = [eval_group]
