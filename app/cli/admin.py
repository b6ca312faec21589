"""kb init / migrate / users / collections / keys."""

from __future__ import annotations

import click

from app import accounts, audit
from app.cli import Ctx, cli_actor, emit_json, emit_table, pass_ctx, read_secret_stdin
from app.errors import KbError
from app.passwords import generate_password


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
    from app.setup import init as do_init

    password = read_secret_stdin() if admin_password_stdin else None
    result = do_init(ctx.container, admin_name, password, actor=cli_actor())
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
    from app import migrate as m

    engine = ctx.container.engine
    before = m.current_revision(engine)
    if revision == "base":
        m.downgrade(engine, "base")
    else:
        m.upgrade(engine, revision)
    click.echo(f"schema: {before or 'empty'} -> {m.current_revision(engine) or 'empty'}")


# --- users -------------------------------------------------------------------------------------
@click.group()
def users() -> None:
    """Manage user accounts (roles: staff, admin, auditor)."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, help="staff, admin or auditor.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def users_add(ctx: Ctx, name: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user. Without --password-stdin a random password is printed once."""
    accounts.check_role(role)
    password = read_secret_stdin() if password_stdin else generate_password()
    c = ctx.container
    with c.sessions.begin() as s:
        view = accounts.add_user(s, name, role, password)
        audit.append(s, c.vault, kind="admin", action="user.create", target=name, actor=cli_actor(),
                     details={"role": role})
    if as_json:
        emit_json({"user": view, "password": None if password_stdin else password})
    else:
        click.echo(f"created {role} {name!r}")
        if not password_stdin:
            click.echo(f"password: {password}   <- shown once")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def users_list(ctx: Ctx, as_json: bool) -> None:
    """List users with role and state."""
    with ctx.container.sessions() as s:
        rows = accounts.list_users(s)
    if as_json:
        emit_json(rows)
    else:
        emit_table([{**r.__dict__, "state": "disabled" if r.disabled else "locked" if r.locked else "active"}
                    for r in rows], ["name", "role", "state", "created_at"])


@users.command("disable")
@click.argument("name")
@pass_ctx
def users_disable(ctx: Ctx, name: str) -> None:
    """Disable a user: they can no longer sign in or receive any passage."""
    c = ctx.container
    with c.sessions.begin() as s:
        accounts.set_disabled(s, name, True)
        audit.append(s, c.vault, kind="admin", action="user.disable", target=name, actor=cli_actor())
    click.echo(f"disabled {name!r}")


@users.command("enable")
@click.argument("name")
@pass_ctx
def users_enable(ctx: Ctx, name: str) -> None:
    """Enable a disabled user again."""
    c = ctx.container
    with c.sessions.begin() as s:
        accounts.set_disabled(s, name, False)
        audit.append(s, c.vault, kind="admin", action="user.enable", target=name, actor=cli_actor())
    click.echo(f"enabled {name!r}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@pass_ctx
def users_passwd(ctx: Ctx, name: str, password_stdin: bool) -> None:
    """Reset a user's password (and unlock the account)."""
    password = read_secret_stdin() if password_stdin else generate_password()
    c = ctx.container
    with c.sessions.begin() as s:
        accounts.set_password(s, name, password)
        audit.append(s, c.vault, kind="admin", action="user.password_reset", target=name, actor=cli_actor())
    click.echo(f"password of {name!r} reset" + ("" if password_stdin else f": {password}   <- shown once"))


# --- collections -------------------------------------------------------------------------------
@click.group()
def collections() -> None:
    """Manage collections and who may read or write them."""


@collections.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the collection holds.")
@pass_ctx
def collections_add(ctx: Ctx, name: str, description: str) -> None:
    """Create a collection."""
    c = ctx.container
    with c.sessions.begin() as s:
        accounts.add_collection(s, name, description)
        audit.append(s, c.vault, kind="admin", action="collection.create", target=name, actor=cli_actor())
    click.echo(f"created collection {name!r}")


@collections.command("grant")
@click.argument("name")
@click.option("--user", help="Grant to this user.")
@click.option("--role", help="Grant to everyone with this role.")
@click.option("--write", is_flag=True, help="Also allow uploading into the collection.")
@pass_ctx
def collections_grant(ctx: Ctx, name: str, user: str | None, role: str | None, write: bool) -> None:
    """Let a user or a role read (and with --write, add to) a collection."""
    c = ctx.container
    with c.sessions.begin() as s:
        accounts.grant(s, name, user=user, role=role, write=write)
        audit.append(s, c.vault, kind="admin", action="grant.add", target=name, actor=cli_actor(),
                     details={"user": user, "role": role, "write": write})
    who = f"user {user}" if user else f"role {role}"
    click.echo(f"granted {'write' if write else 'read'} on {name!r} to {who}")


@collections.command("revoke")
@click.argument("name")
@click.option("--user", help="Revoke this user's grant.")
@click.option("--role", help="Revoke the grant of this role.")
@pass_ctx
def collections_revoke(ctx: Ctx, name: str, user: str | None, role: str | None) -> None:
    """Remove a grant."""
    if (user is None) == (role is None):
        raise KbError("Revoke exactly one of --user NAME or --role ROLE.")
    c = ctx.container
    with c.sessions.begin() as s:
        n = accounts.revoke(s, name, user=user, role=role)
        audit.append(s, c.vault, kind="admin", action="grant.remove", target=name, actor=cli_actor(),
                     details={"user": user, "role": role, "removed": n})
    click.echo(f"removed {n} grant(s)")


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def collections_list(ctx: Ctx, as_json: bool) -> None:
    """List collections and their grants."""
    with ctx.container.sessions() as s:
        rows = accounts.list_collections(s)
    if as_json:
        emit_json(rows)
    else:
        emit_table([{**r.__dict__, "grants": ", ".join(r.grants) or "-"} for r in rows],
                   ["name", "grants", "description"])


# --- keys --------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Master-key status and rotation."""


@keys.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_status(ctx: Ctx, as_json: bool) -> None:
    """Show the cipher, key versions and how many data keys each version wraps."""
    c = ctx.container
    with c.sessions() as s:
        st = c.vault.status(s)
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
    c = ctx.container
    with c.sessions.begin() as s:
        version, count = c.vault.rotate(s)
        audit.append(s, c.vault, kind="admin", action="keys.rotate", target=f"v{version}", actor=cli_actor(),
                     details={"rewrapped": count})
    if as_json:
        emit_json({"version": version, "rewrapped": count})
    else:
        click.echo(f"master key now at version {version}; {count} data key(s) re-wrapped")


COMMANDS = [init, migrate, users, collections, keys]
