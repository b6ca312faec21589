"""kb init / migrate / users / collections / keys."""

from __future__ import annotations

import click

from app import accounts
from app.cli import Ctx, emit_json, emit_table, pass_ctx, read_secret_stdin
from app.services import keys as keys_svc
from app.services import users as users_svc
from app.services.caller import actor


@click.command()
@click.option("--admin-name", default="admin", show_default=True, help="Name of the first admin account.")
@click.option("--admin-password-stdin", is_flag=True, help="Read the first admin's password from stdin.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def init(ctx: Ctx, admin_name: str, admin_password_stdin: bool, as_json: bool) -> None:
    """Create the data dir and master key, migrate the database, and create the first admin.

    Safe to run again: it only does what is missing. The first admin's password is printed once
    (unless given on stdin); kb stores only its hash.
    """
    from app.services.setup import init as do_init

    password = read_secret_stdin() if admin_password_stdin else None
    result = do_init(ctx.container, admin_name, password, actor=actor(ctx.caller))
    if as_json:
        emit_json(result)
        return
    click.echo(f"data dir:  {result.data_dir}")
    click.echo(f"database:  {result.database}")
    if result.key_file:
        click.echo(f"key file:  {result.key_file}{' (created, mode 0600: back it up!)' if result.key_created else ''}")
    if result.admin_created:
        click.echo(f"admin:     {result.admin_created}")
        if result.admin_password:
            click.echo(f"password:  {result.admin_password}   <- shown once; change it after signing in")
    click.echo("kb is ready.")


@click.command()
@click.option("--revision", default="head", show_default=True, help="Target revision ('base' to empty).")
@pass_ctx
def migrate(ctx: Ctx, revision: str) -> None:
    """Bring the database schema to the given revision (Alembic)."""
    from app.services import setup

    before, after = setup.migrate_schema(ctx.container, revision)
    click.echo(f"schema: {before or 'empty'} -> {after or 'empty'}")


# --- users -------------------------------------------------------------------------------------
@click.group()
def users() -> None:
    """Manage user accounts (roles: staff, admin, auditor)."""


def _show_password(result: users_svc.NewPassword, what: str) -> None:
    click.echo(what + (f": {result.password}   <- shown once" if result.generated else ""))


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, help="staff, admin or auditor.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def users_add(ctx: Ctx, name: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user. Without --password-stdin a random password is printed once."""
    accounts.check_role(role)
    password = read_secret_stdin() if password_stdin else None
    result = users_svc.create_user(ctx.container, ctx.caller, name, role, password)
    if as_json:
        emit_json({"user": result.user, "password": result.password if result.generated else None})
    else:
        _show_password(result, f"created {role} {name!r}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def users_list(ctx: Ctx, as_json: bool) -> None:
    """List users with role and state."""
    rows = users_svc.users(ctx.container, ctx.caller)
    if as_json:
        emit_json(rows)
    else:
        emit_table([{**r.__dict__, "state": "disabled" if r.disabled else "locked" if r.locked else "active"}
                    for r in rows], ["name", "role", "state", "created_at"])


@users.command("disable")
@click.argument("name")
@pass_ctx
def users_disable(ctx: Ctx, name: str) -> None:
    """Disable a user: they can no longer sign in or receive any passage (never the last admin)."""
    users_svc.set_disabled(ctx.container, ctx.caller, name, True)
    click.echo(f"disabled {name!r}")


@users.command("enable")
@click.argument("name")
@pass_ctx
def users_enable(ctx: Ctx, name: str) -> None:
    """Enable a disabled user again."""
    users_svc.set_disabled(ctx.container, ctx.caller, name, False)
    click.echo(f"enabled {name!r}")


@users.command("role")
@click.argument("name")
@click.argument("role")
@pass_ctx
def users_role(ctx: Ctx, name: str, role: str) -> None:
    """Change a user's role (staff, admin or auditor; never demotes the last admin)."""
    users_svc.set_role(ctx.container, ctx.caller, name, role)
    click.echo(f"{name!r} is now {role}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@pass_ctx
def users_passwd(ctx: Ctx, name: str, password_stdin: bool) -> None:
    """Reset a user's password (and unlock the account)."""
    password = read_secret_stdin() if password_stdin else None
    _show_password(users_svc.reset_password(ctx.container, ctx.caller, name, password), f"password of {name!r} reset")


# --- collections -------------------------------------------------------------------------------
@click.group()
def collections() -> None:
    """Manage collections and who may read or write them."""


PII_POLICIES = users_svc.PII_POLICIES
_PII_HELP = "What ingestion scrubs from its documents: " + "; ".join(f"'{k}': {v}" for k, v in PII_POLICIES.items())


@collections.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the collection holds.")
@click.option("--pii", type=click.Choice(list(PII_POLICIES)), default="all", show_default=True, help=_PII_HELP)
@pass_ctx
def collections_add(ctx: Ctx, name: str, description: str, pii: str) -> None:
    """Create a collection (before its first upload, to choose its PII policy)."""
    users_svc.create_collection(ctx.container, ctx.caller, name, description, pii)
    click.echo(f"created collection {name!r} (PII scrubbed: {pii})")


@collections.command("pii", help="Change what is scrubbed from a collection's documents (POLICY); they are "
                     f"indexed again under it.\n\n{_PII_HELP}.")
@click.argument("name")
@click.argument("policy", type=click.Choice(list(PII_POLICIES)))
@pass_ctx
def collections_pii(ctx: Ctx, name: str, policy: str) -> None:
    queued = users_svc.set_pii_policy(ctx.container, ctx.caller, name, policy)
    click.echo(f"collection {name!r} now scrubs: {policy}; {queued} document(s) queued to be indexed again"
               + (" (`kb worker` or `kb serve` indexes them)" if queued else ""))


@collections.command("grant")
@click.argument("name")
@click.option("--user", help="Grant to this user.")
@click.option("--role", help="Grant to everyone with this role.")
@click.option("--write", is_flag=True, help="Also allow uploading into the collection.")
@pass_ctx
def collections_grant(ctx: Ctx, name: str, user: str | None, role: str | None, write: bool) -> None:
    """Let a user or a role read (and with --write, add to) a collection."""
    users_svc.grant(ctx.container, ctx.caller, name, user=user, role=role, write=write)
    who = f"user {user}" if user else f"role {role}"
    click.echo(f"granted {'write' if write else 'read'} on {name!r} to {who}")


@collections.command("revoke")
@click.argument("name")
@click.option("--user", help="Revoke this user's grant.")
@click.option("--role", help="Revoke the grant of this role.")
@pass_ctx
def collections_revoke(ctx: Ctx, name: str, user: str | None, role: str | None) -> None:
    """Remove a grant."""
    n = users_svc.revoke(ctx.container, ctx.caller, name, user=user, role=role)
    click.echo(f"removed {n} grant(s)")


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def collections_list(ctx: Ctx, as_json: bool) -> None:
    """List collections and their grants."""
    rows = users_svc.collections(ctx.container, ctx.caller)
    if as_json:
        emit_json(rows)
    else:
        emit_table([{**r.__dict__, "grants": ", ".join(r.grants) or "-"} for r in rows],
                   ["name", "pii", "grants", "description"])


# --- keys --------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Master-key status and rotation."""


@keys.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_status(ctx: Ctx, as_json: bool) -> None:
    """Show the cipher, key versions and how many data keys each version wraps."""
    st = keys_svc.status(ctx.container, ctx.caller)
    if as_json:
        emit_json(st)
        return
    for k, v in st.items():
        click.echo(f"{k:22} {v}")


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_rotate(ctx: Ctx, as_json: bool) -> None:
    """Add a master-key version and re-wrap every data key under it, in one transaction.

    Old versions stay in the key file, so an interrupted rotation loses nothing; run it again.
    """
    version, count = keys_svc.rotate(ctx.container, ctx.caller)
    if as_json:
        emit_json({"version": version, "rewrapped": count})
    else:
        click.echo(f"master key now at version {version}; {count} data key(s) re-wrapped")


COMMANDS = [init, migrate, users, collections, keys]
