"""kb db setup-roles: the PostgreSQL owner and app roles (app.services.db_roles), run by the DBA."""

from __future__ import annotations

import sys

import click

from app.cli import Ctx, emit_json, pass_ctx
from app.services import db_roles


@click.group("db")
def db_group() -> None:
    """Database administration (PostgreSQL)."""


@db_group.command("setup-roles")
@click.option("--owner", default="kb_owner", show_default=True, help="Role that owns the tables and triggers.")
@click.option("--app", "app_role", default="kb_app", show_default=True,
              help="Role kb's servers log in as: only SELECT and INSERT on audit_log.")
@click.option("--passwords-stdin", is_flag=True,
              help="Read the app role's password from the first line of stdin and, if a second line follows, the "
                   "owner's (the owner may then log in, for `kb migrate` and `kb audit purge`).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def setup_roles(ctx: Ctx, owner: str, app_role: str, passwords_stdin: bool, as_json: bool) -> None:
    """Give the schema to an owner role and leave the app role unable to change or erase the audit log.

    Run with KB_DATABASE__URL naming a superuser (the DBA), after `kb init` or `kb migrate`. Then set
    KB_DATABASE__URL for kb's servers to the app role. Safe to run again.
    """
    app_pw = owner_pw = None
    if passwords_stdin:
        app_pw = sys.stdin.readline().rstrip("\n") or None
        owner_pw = sys.stdin.readline().rstrip("\n") or None
    report = db_roles.setup_roles(ctx.container, ctx.caller, owner=owner, app=app_role, app_password=app_pw,
                                  owner_password=owner_pw)
    if as_json:
        emit_json(report)
        return
    made = f" (created: {', '.join(report.created)})" if report.created else ""
    click.echo(f"database {report.database}: {len(report.tables)} tables now owned by {report.owner}{made}")
    click.echo(f"{report.app} may SELECT/INSERT/UPDATE/DELETE the working tables, only SELECT/INSERT on audit_log, "
               "and cannot alter, truncate or disable triggers")
    if not report.owner_can_log_in:
        click.echo(f"{report.owner} cannot log in: run `kb migrate` and `kb audit purge` as a DBA login that is a "
                   f"member of {report.owner} (GRANT {report.owner} TO <dba>) or give it a password")


COMMANDS = [db_group]
