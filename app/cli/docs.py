"""kb ingest / worker / docs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import click

from app.cli import Ctx, emit_json, emit_table, pass_ctx, read_secret_stdin
from app.errors import KbError
from app.services import documents


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", default="default", show_default=True, help="Collection to add to (created if new).")
@click.option("--wait", is_flag=True, help="Also process the queue here, with a progress bar, and print a summary.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@pass_ctx
def ingest(ctx: Ctx, paths: tuple[Path, ...], collection: str, wait: bool, as_json: bool) -> None:
    """Queue files, folders (recursive) and .zip archives for indexing.

    Originals are sealed under the data dir at once; a worker (`kb worker`, `kb serve`, or --wait)
    parses, scrubs, chunks and embeds them. Unchanged files are skipped; changed ones replace
    their older version. Every file ends with a status and, if it failed, the reason.
    """
    from ingest.worker import Worker

    c = ctx.container
    started = time.perf_counter()
    created = collection not in documents.collection_names(c, ctx.caller)
    submitted = []
    progress = _Progress(quiet=as_json)
    worker = Worker(c) if wait else None
    finish = worker.start_draining(on_done=progress.tick) if worker else None  # indexes while we queue
    with click.progressbar(length=0, label="queueing", show_pos=True, file=None if not as_json else _null()) as bar:
        for item in documents.ingest_paths(c, ctx.caller, list(paths), collection):
            submitted.append(item)
            bar.update(1)
    queued_ids = [x.document_id for x in submitted if x.outcome == "queued" and x.document_id]
    times = None
    if worker and finish:
        with progress.bar(len(queued_ids)) if queued_ids else nullcontext():
            finish()  # also drains jobs queued earlier by others
        times = worker.times if queued_ids else None
    elapsed = time.perf_counter() - started
    ids = [x.document_id for x in submitted if x.document_id]
    views = {v.id: v for v in documents.docs_by_id(c, ctx.caller, ids)}
    outcome = Counter()
    for x in submitted:
        outcome["unchanged" if x.outcome == "unchanged" else (views[x.document_id].status if x.document_id in views
                                                               else x.outcome)] += 1
    summary = {
        "files": len(submitted), "by_status": dict(outcome), "seconds": round(elapsed, 2),
        "files_per_s": round(len(submitted) / elapsed, 2) if elapsed else None,
        "chunks": times.chunks if times else None,
        "chunks_per_s": round(times.chunks / elapsed, 1) if times and elapsed else None,
        "stage_seconds": {k: round(v, 2) for k, v in times.seconds.items()} if times else None,
        "problems": [{"source": v.source, "status": v.status, "reason": v.reason} for v in views.values()
                     if v.reason and v.status not in ("indexed", "queued")],
    }
    if as_json:
        emit_json(summary)
        return
    if created:
        click.echo(f"new collection {collection!r}: all personal data is scrubbed from it, names and addresses "
                   f"too (for public documents: `kb collections pii {collection} identifiers`)")
    click.echo(f"{summary['files']} file(s) in {summary['seconds']} s: "
               + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())))
    if times:
        click.echo(f"{times.chunks} chunks, {summary['files_per_s']} files/s, {summary['chunks_per_s']} chunks/s; "
                   "stage seconds: " + ", ".join(f"{k} {v}" for k, v in summary["stage_seconds"].items()))
    for p in summary["problems"]:
        click.echo(f"  {p['status']:15} {p['source']}: {p['reason']}")
    if not wait and queued_ids:
        click.echo("Queued. Run `kb worker` (or `kb serve`) to index them, or pass --wait.")


def _null():
    import io

    return io.StringIO()


class _Progress:
    """The indexing bar: documents finished while files were still being queued count from the start."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.done = 0
        self._bar = None
        self._lock = threading.Lock()

    def tick(self, _doc_id: int, _status: object) -> None:
        with self._lock:
            self.done += 1
            if self._bar is not None:
                self._bar.update(1)

    @contextmanager
    def bar(self, total: int):
        with click.progressbar(length=total, label="indexing", show_pos=True, show_eta=True,
                               file=_null() if self.quiet else None) as bar:
            with self._lock:
                bar.update(self.done)
                self._bar = bar
            yield
        self._bar = None


@click.command()
@click.option("--once", is_flag=True, help="Process what is queued, then exit.")
@pass_ctx
def worker(ctx: Ctx, once: bool) -> None:
    """Run the ingestion worker. Any number may run against PostgreSQL; stop with Ctrl-C or SIGTERM (it
    finishes the batch in hand; Ctrl-C again stops at once)."""
    from ingest.worker import Worker

    w = Worker(ctx.container)
    _lower_priority(ctx.container.settings.ingest.worker_nice)
    if once:
        n = w.run_once()
        click.echo(f"processed {n} document(s)")
        return
    click.echo(f"worker {w.name} waiting for jobs (Ctrl-C to stop)")
    _run_until_signalled(w.run_forever, w.stop)
    click.echo("worker stopped")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _run_until_signalled(loop: Callable[[], None], stop: threading.Event) -> None:
    """Run ``loop`` in a thread until it returns; Ctrl-C or SIGTERM sets ``stop`` (the loop finishes its
    batch), a second Ctrl-C exits at once (leases expire, another worker picks the jobs up again).

    The handler only notes the signal and this thread sets ``stop``: a handler runs between any two
    bytecodes of the main thread, and one that set the Event while the main thread was inside that
    Event's own lock (Ctrl-C, then kb serve's SIGTERM a moment later) deadlocked the worker until it
    was killed."""
    received: list[int] = []
    # A SIGINT ignored by whoever started us (a background job of a shell, nohup) stays ignored.
    caught = [s for s in STOP_SIGNALS if not (s == signal.SIGINT and signal.getsignal(s) is signal.SIG_IGN)]
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in caught}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop()
        except BaseException as exc:  # re-raised below, in the main thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="kb-worker-loop", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            if received.count(signal.SIGINT) > 1:  # SIGTERM (kb serve's, after the same Ctrl-C) never is
                click.echo("worker stopped at once (its unfinished jobs are picked up again)", err=True)
                os._exit(130)
            if received and not stop.is_set():
                stop.set()
                click.echo("worker stopping after the current batch (Ctrl-C again to stop at once)", err=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failure:
        raise failure[0]


def _lower_priority(nice: int) -> None:
    """Embedding yields the CPU to answering: on a shared host the generator's threads would otherwise
    be preempted mid-token and decoding collapses (40 -> 2-3 tokens/s measured on 2 cores)."""
    if nice > 0 and hasattr(os, "nice"):
        with suppress(OSError):
            os.nice(nice)


@click.group()
def docs() -> None:
    """List, inspect, delete and retry documents."""


@docs.command("list")
@click.option("--collection", "-c", help="Only this collection.")
@click.option("--status", "-s", help="Only this status (indexed, failed, needs_password, empty, duplicate, ...).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def docs_list(ctx: Ctx, collection: str | None, status: str | None, as_json: bool) -> None:
    """List documents (newest version of each file)."""
    rows = documents.list_docs(ctx.container, ctx.caller, status=status, collection=collection, newest_first=False)
    if as_json:
        emit_json(rows)
    else:
        emit_table([r.__dict__ for r in rows], ["id", "collection", "status", "n_chunks", "source", "reason"])


@docs.command("show")
@click.argument("doc_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def docs_show(ctx: Ctx, doc_id: int, as_json: bool) -> None:
    """Show one document's details."""
    view = documents.show_doc(ctx.container, ctx.caller, doc_id)
    if as_json:
        emit_json(view)
    else:
        for k, v in view.__dict__.items():
            click.echo(f"{k:12} {v}")


@docs.command("delete")
@click.argument("doc_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def docs_delete(ctx: Ctx, doc_id: int, yes: bool) -> None:
    """Delete a document: its chunks, vectors, stored original and every older version."""
    view = documents.show_doc(ctx.container, ctx.caller, doc_id)
    if not yes:
        click.confirm(f"Delete {view.source} ({view.n_chunks} chunks)?", abort=True)
    documents.delete_doc(ctx.container, ctx.caller, doc_id)
    click.echo(f"deleted document {doc_id} ({view.source})")


@docs.command("retry")
@click.argument("doc_id", type=int, required=False)
@click.option("--failed", is_flag=True, help="Retry every failed document.")
@click.option("--password-stdin", is_flag=True,
              help="Read the file's password from stdin and index it now, here (the password is used once and "
                   "never stored).")
@pass_ctx
def docs_retry(ctx: Ctx, doc_id: int | None, failed: bool, password_stdin: bool) -> None:
    """Queue a document (or, with --failed, all failed ones) for processing again."""
    if (doc_id is None) == (not failed):
        raise KbError("Give a document id or --failed.")
    if password_stdin:
        if doc_id is None:
            raise KbError("--password-stdin opens one document: give its id.")
        documents.retry_docs(ctx.container, ctx.caller, [doc_id], password=read_secret_stdin())
        view = documents.show_doc(ctx.container, ctx.caller, doc_id)
        click.echo(f"document {doc_id}: {view.status}" + (f" ({view.reason})" if view.reason else ""))
        if view.status != "indexed":
            raise SystemExit(1)
        return
    ids = documents.retry_docs(ctx.container, ctx.caller, None if failed else [doc_id], failed=failed)
    click.echo(f"queued {len(ids)} document(s) again; a worker will pick them up")


COMMANDS = [ingest, worker, docs]
