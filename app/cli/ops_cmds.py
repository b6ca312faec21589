"""kb backup / kb restore / kb doctor: what an operator runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli import Ctx, emit_json, pass_ctx
from app.errors import KbError


class _Bars:
    """One click progress bar per stage on stderr (none with --json or when stderr is not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar = None

    def __call__(self, label: str, total: int):
        self.close()
        if self.quiet:
            return lambda _n: None
        bar = click.progressbar(length=max(total, 1), label=f"{label:9}", show_eta=True, show_percent=True,
                                file=sys.stderr)
        self._bar = bar.__enter__()
        return self._bar.update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _passphrase(from_stdin: bool, confirm: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
        if not value:
            raise KbError("Expected the backup passphrase on standard input, got nothing.")
        return value
    return click.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin (else it is asked for).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@pass_ctx
def backup(ctx: Ctx, dest: Path, passphrase_stdin: bool, as_json: bool) -> None:
    """Write an encrypted backup of this installation to the new folder DEST.

    One consistent snapshot of the database (SQLite online backup, or pg_dump), the sealed originals,
    the model manifest, and the master key ring wrapped under the passphrase (scrypt, AES-256-GCM);
    manifest.json lists every file's sha256. Safe while kb serves. Keep the passphrase apart from the
    backup: without it the backup cannot be opened.
    """
    from app.services import backup as svc

    passphrase = _passphrase(passphrase_stdin, confirm=True)
    bars = _Bars(quiet=as_json or not sys.stderr.isatty())
    try:
        result = svc.backup(ctx.container, ctx.caller, dest, passphrase, progress=bars)
    finally:
        bars.close()
    if as_json:
        emit_json(svc.as_dict(result))
        return
    click.echo(f"backup {result.backup_id} written to {result.dest}")
    click.echo(f"  {result.documents} documents, {result.chunks} chunks, {result.audit_records} audit records, "
               f"{result.blobs} originals; schema {result.schema}")
    click.echo(f"  {result.files} files, {result.bytes / 1e6:.1f} MB in {result.seconds} s")
    if result.missing_blobs:
        click.echo(f"  note: {len(result.missing_blobs)} original(s) were deleted while the backup ran", err=True)


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin (else it is asked for).")
@click.option("--no-rebuild", is_flag=True, help="Skip rebuilding the indexes (the first search does it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@pass_ctx
def restore(ctx: Ctx, src: Path, passphrase_stdin: bool, no_rebuild: bool, as_json: bool) -> None:
    """Restore the backup SRC into an empty data dir and an empty database (KB_DATA_DIR, KB_DATABASE_URL).

    Checks the passphrase and every file's sha256 before writing anything, and leaves nothing behind
    when it stops; migrates an older schema to head, verifies the audit chain and rebuilds the indexes.
    """
    from app.services import backup as svc

    passphrase = _passphrase(passphrase_stdin, confirm=False)
    bars = _Bars(quiet=as_json or not sys.stderr.isatty())
    try:
        result = svc.restore(ctx.container, ctx.caller, src, passphrase, progress=bars, rebuild=not no_rebuild)
    finally:
        bars.close()
    if as_json:
        emit_json(svc.as_dict(result))
    else:
        click.echo(f"restored backup {result.backup_id} (made {result.backup_created_at}) into {result.data_dir}")
        click.echo(f"  database {result.database}: schema {result.schema_from} -> {result.schema_to}")
        click.echo(f"  {result.documents} documents, {result.chunks} chunks, {result.blobs} originals "
                   f"in {result.seconds} s" + (f"; index rebuilt ({result.indexed_chunks} chunks)"
                                               if result.indexed_chunks is not None else ""))
        click.echo(f"  audit chain: {'intact' if result.audit_ok else 'BROKEN'} ({result.audit_checked} records)")
        for note in result.notes:
            click.echo(f"  note: {note}")
    if not result.audit_ok:
        click.echo(f"error: the restored audit chain is broken at {result.audit_problem}. The data is restored; "
                   "find out who altered the log before using it (kb audit verify).", err=True)
        click.get_current_context().exit(1)


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (for monitoring).")
@click.option("--quick", is_flag=True, help="Do not hash the model file (a 1 GB model takes a few seconds).")
@pass_ctx
def doctor(ctx: Ctx, as_json: bool, quick: bool) -> None:
    """Check this installation and say what to fix; exits 1 when something needs fixing.

    Database reachable and at the head revision, master key present and private, data dir, disk space,
    audit chain, original files, index in step with the chunks table, embedder and generator model
    (sha256 verified), and chromium for the browser tests in a source checkout.
    """
    from app.services import doctor as svc

    report = svc.diagnose(ctx.container, ctx.caller, verify_models=not quick)
    if as_json:
        emit_json(report.as_dict())
    else:
        for c in report.checks:
            click.echo(f"{_MARK.get(c.status, c.status)}  {c.name:12} {c.detail}")
            if c.fix and c.status in ("warn", "fail"):
                click.echo(f"{'':18}fix: {c.fix}")
        click.echo("all good" if report.ok else "something needs fixing (see FAIL above)")
    if not report.ok:
        click.get_current_context().exit(1)


COMMANDS = [backup, restore, doctor]
