"""kb audit list / show / export / verify / purge.

Each command calls app.services.auditing as the operator (`ctx.caller`, an admin): whoever runs the
CLI holds the database login and the key file, which is admin access already. Staff and auditors
read the log through the UI, as the signed-in user.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from app.cli import Ctx, emit_json, emit_table, pass_ctx
from app.errors import KbError
from app.services import auditing

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """'2026-01-31', '2026-01-31T08:00', '2026-01-31 08:00+08:00' or '7d' / '12h' / '30m' / '2w' ago.
    A bare date means midnight UTC; with `end_of_day` (for --until) it includes that whole day."""
    if value is None:
        return None
    m = _RELATIVE.match(value)
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            d = date.fromisoformat(value.strip())
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise KbError(f"Cannot read the time {value!r}. Use a date (2026-01-31), a date and time "
                      "(2026-01-31T08:00, UTC unless an offset is given) or an age such as 7d or 12h.") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def filter_options(f):
    """The filters list and export share."""
    for opt in reversed([
        click.option("--user", "user", help="Only records by this user (the actor)."),
        click.option("--since", help="From this time on: 2026-01-31, 2026-01-31T08:00 (UTC) or an age (7d, 12h)."),
        click.option("--until", help="Before this time (a bare date includes that whole day)."),
        click.option("--contains", help="Case-insensitive text in the question, answer, reason or target."),
        click.option("--kind", type=click.Choice(auditing.KINDS), help="Only questions, admin events or anchors."),
    ]):
        f = opt(f)
    return f


def _filters(user: str | None, since: str | None, until: str | None, contains: str | None,
             kind: str | None) -> dict[str, Any]:
    return {"actor": user, "since": parse_time(since), "until": parse_time(until, end_of_day=True),
            "contains": contains, "kind": kind}


def _summary(v: auditing.AuditView) -> str:
    text = v.question if v.question is not None else (v.target or "")
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


@click.group("audit")
def audit_group() -> None:
    """Read, export and verify the tamper-evident audit log; purge past the retention period."""


@audit_group.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, help="Most records to show (newest first).")
@click.option("--offset", default=0, help="Skip this many matching records (paging).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (questions and answers included).")
@pass_ctx
def audit_list(ctx: Ctx, user, since, until, contains, kind, limit: int, offset: int, as_json: bool) -> None:
    """List audit records, newest first."""
    rows = auditing.query(ctx.container, ctx.caller, limit=limit, offset=offset,
                          **_filters(user, since, until, contains, kind))
    if as_json:
        emit_json(rows)
        return
    emit_table([{"seq": v.seq, "time (utc)": f"{v.created_at:%Y-%m-%d %H:%M:%S}", "kind": v.kind,
                 "action": v.action, "actor": v.actor, "client": v.client, "outcome": v.outcome,
                 "question / target": _summary(v)} for v in rows],
               ["seq", "time (utc)", "kind", "action", "actor", "client", "outcome", "question / target"])


@audit_group.command("show")
@click.argument("seq", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_show(ctx: Ctx, seq: int, as_json: bool) -> None:
    """Show one record in full: question, answer, retrieved chunks, timings, hashes."""
    v = auditing.get(ctx.container, ctx.caller, seq)
    if as_json:
        emit_json(v)
        return
    for name in ("seq", "created_at", "kind", "action", "actor", "actor_role", "client", "target", "outcome",
                 "question", "answer", "reason", "prev_hash", "hash", "payload_error"):
        value = getattr(v, name)
        if value is not None:
            click.echo(f"{name:12} {value}")
    click.echo("details:")
    emit_json(v.details)


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(auditing.EXPORT_FORMATS), required=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (created readable by you only) instead of stdout.")
@filter_options
@pass_ctx
def audit_export(ctx: Ctx, fmt: str, output: Path | None, user, since, until, contains, kind) -> None:
    """Export matching records, oldest first, with questions and answers opened. The export itself is logged."""
    c = ctx.container  # a bad setting stops kb before the file is created
    filters = _filters(user, since, until, contains, kind)
    if output is None:
        n = auditing.export(c, ctx.caller, fmt, sys.stdout, **filters)
    else:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            n = auditing.export(c, ctx.caller, fmt, f, **filters)
    if output is not None:
        click.echo(f"exported {n} record(s) to {output}", err=True)


@audit_group.command("verify")
@click.option("--expect-head", metavar="SEQ:HASH",
              help="A head printed by an earlier verify: also proves the log was not cut or rewritten since.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_verify(ctx: Ctx, expect_head: str | None, as_json: bool) -> None:
    """Walk the keyed chain and compare it with the latest head checkpoint. Exit 0 when intact; otherwise
    exit 1 naming the first bad record, what is wrong and the last record still proven good.

    Needs the master key (each link is an HMAC under a key derived from it). The head checkpoint kb
    keeps in the data dir (and KB_AUDIT__CHECKPOINT_LOG, if set) already exposes a cut or wiped log;
    --expect-head SEQ:HASH checks a head you recorded elsewhere too.
    """
    head = None
    if expect_head:
        seq_text, _, hash_text = expect_head.partition(":")
        if not seq_text.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", hash_text):
            raise KbError("--expect-head takes SEQ:HASH as printed by `kb audit verify`, e.g. 120:9f86d0...")
        head = (int(seq_text), hash_text)
    report = auditing.verify(ctx.container, ctx.caller, expect_head=head)
    if as_json:
        emit_json(report)
    elif report.ok:
        if report.checked == 0:
            click.echo("audit log is empty: nothing to verify")
        else:
            click.echo(f"audit log intact: {report.checked} record(s), seq {report.first_seq}..{report.last_seq}, "
                       f"{report.records_per_s:.0f} records/s")
            click.echo(f"head: {report.last_seq}:{report.last_hash}")
        if report.checkpoint_seq is not None:
            click.echo(f"checked against the head checkpoint at seq {report.checkpoint_seq} "
                       f"({report.checkpoint_source})")
        else:
            click.echo("no head checkpoint yet (one is written after the next audited action)")
    else:
        where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
        click.echo(f"audit log BROKEN{where}: {report.problem}", err=True)
        good = "none" if report.last_good_seq is None else f"seq {report.last_good_seq}"
        click.echo(f"last good record: {good} ({report.checked} record(s) read; the log's last seq is "
                   f"{report.last_seq})", err=True)
    if not report.ok:
        click.get_current_context().exit(1)


@audit_group.command("purge")
@click.option("--before", required=True, help="Delete records created before this date (UTC), e.g. 2025-01-01.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_purge(ctx: Ctx, before: str, yes: bool, as_json: bool) -> None:
    """Delete records older than the retention period (KB_AUDIT__RETENTION_DAYS), keeping the chain verifiable.

    Refused for dates inside the retention period or when the chain does not verify. The purge is
    itself logged as an anchor record that names the last purged record, so verify starts there.
    """
    c = ctx.container  # a bad setting stops kb before the question
    when = parse_time(before)
    assert when is not None
    if not yes:
        click.confirm(f"Permanently delete audit records created before {when:%Y-%m-%d %H:%M} UTC?", abort=True)
    report = auditing.purge(c, ctx.caller, when)
    if as_json:
        emit_json(report)
    elif report.purged:
        click.echo(f"purged {report.purged} record(s) (seq {report.first_purged_seq}..{report.last_purged_seq}); "
                   f"anchor is seq {report.anchor_seq}; {report.keys_dropped} data key(s) destroyed")
    else:
        click.echo(f"nothing older than {when:%Y-%m-%d %H:%M} UTC; the request is logged as seq {report.anchor_seq}")


COMMANDS = [audit_group]
