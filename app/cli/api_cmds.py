"""kb api (the HTTP API) and kb api-keys create / list / revoke."""

from __future__ import annotations

import click

from app.cli import Ctx, emit_json, emit_table, pass_ctx


@click.group("api-keys")
def api_keys() -> None:
    """Keys for the HTTP API: each acts with exactly its user's role and grants."""


@api_keys.command("create")
@click.argument("user")
@click.option("--name", default="", help="What the key is for (shown in `kb api-keys list`).")
@click.option("--expires-days", type=int, help="Days until the key stops working (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def keys_create(ctx: Ctx, user: str, name: str, expires_days: int | None, as_json: bool) -> None:
    """Create a key for USER and print it once (kb keeps only its hash)."""
    from app.services import api_keys as svc

    new = svc.create(ctx.container, ctx.caller, user, name, expires_days)
    if as_json:
        emit_json({**_row(new.key), "api_key": new.secret})
        return
    click.echo(f"key id:   {new.key.id}")
    click.echo(f"user:     {new.key.user} ({new.key.role})")
    click.echo(f"expires:  {new.key.expires_at.isoformat(timespec='seconds') if new.key.expires_at else 'never'}")
    click.echo(f"api key:  {new.secret}   <- shown once; store it in a secret manager")


def _row(k) -> dict:
    return {"id": k.id, "user": k.user, "role": k.role, "name": k.name, "prefix": k.prefix, "state": k.state,
            "created_by": k.created_by, "created_at": k.created_at, "expires_at": k.expires_at,
            "revoked_at": k.revoked_at, "last_used_at": k.last_used_at}


@api_keys.command("list")
@click.option("--user", help="Only this user's keys.")
@click.option("--active", is_flag=True, help="Only keys that still work.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def keys_list(ctx: Ctx, user: str | None, active: bool, as_json: bool) -> None:
    """Every key (never the secret): owner, state, last use."""
    from app.services import api_keys as svc

    rows = [_row(k) for k in svc.list_keys(ctx.container, ctx.caller, user, include_inactive=not active)]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        for col in ("created_at", "expires_at", "last_used_at"):
            r[col] = r[col].isoformat(timespec="seconds") if r[col] else None
    emit_table(rows, ["id", "user", "role", "name", "prefix", "state", "created_at", "expires_at", "last_used_at"])


@api_keys.command("revoke")
@click.argument("key_id", type=int)
@pass_ctx
def keys_revoke(ctx: Ctx, key_id: int) -> None:
    """Revoke a key at once: its next request gets 401."""
    from app.services import api_keys as svc

    k = svc.revoke(ctx.container, ctx.caller, key_id)
    click.echo(f"revoked key {k.id} ({k.prefix}) of {k.user}")


@click.command()
@click.option("--host", help="Address to listen on (default: api.host, 127.0.0.1; 0.0.0.0 for every interface).")
@click.option("--port", type=int, help="Port (default: api.port, 8000).")
@pass_ctx
def api(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Run the HTTP API (OpenAI-compatible /v1 and kb's /api/v1) until Ctrl-C or SIGTERM.

    Callers send `Authorization: Bearer <key>` (`kb api-keys create USER`). `kb serve` runs it
    beside the web UI and the worker.
    """
    import uvicorn

    from app.cli.serve import _preflight

    c = ctx.container
    _preflight(c)
    host, port = host or c.settings.api.host, port or c.settings.api.port
    click.echo(f"kb API on http://{host}:{port}  (OpenAI-compatible base URL: http://{host}:{port}/v1)", err=True)
    # By name, as `kb serve` starts the UI: the API is a sibling caller, built from the same settings
    # in app.api.app.from_environment.
    uvicorn.run("app.api.app:from_environment", factory=True, host=host, port=port, log_level="warning",
                access_log=False, server_header=False, timeout_graceful_shutdown=10)


COMMANDS = [api_keys, api]
