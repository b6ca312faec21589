"""The ``kb`` command line. Each command group lives in its own module; all share one Container."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Any

import click
from pydantic import ValidationError

from app.errors import ConfigError, KbError


class Ctx:
    """Per-invocation state: the container is built on first use so `kb --help` stays instant."""

    def __init__(self) -> None:
        self._container = None

    @property
    def container(self):
        if self._container is None:
            from pydantic_settings import SettingsError

            from app.services.container import Container
            from app.settings import Settings

            try:
                settings = Settings()  # ConfigError (unknown KB_ variable, alias conflict) passes through
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ConfigError(f"Invalid KB_ setting: {problems}") from None
            except SettingsError as exc:  # e.g. a list or section value that is not valid JSON
                raise ConfigError(f"Invalid KB_ setting: {exc}") from None
            self._container = Container(settings)
        return self._container


    @property
    def caller(self):
        """Who a CLI action runs as: the OS account on the server, acting as admin (it holds the key file)."""
        from app.services.caller import operator

        return operator("cli")


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


def _default(o: Any) -> Any:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if is_dataclass(o):
        return asdict(o)
    if isinstance(o, set):
        return sorted(o)
    return str(o)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, ensure_ascii=False, indent=2))


def emit_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def read_secret_stdin() -> str:
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise KbError("Expected a password on standard input, got nothing.")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log details to stderr (for troubleshooting).")
@click.version_option(package_name="kb")
def cli(verbose: bool) -> None:
    """kb: a private, offline knowledge base.

    Configuration comes from KB_* environment variables (see README.md); the defaults run
    everything from ./data with SQLite. Start with `kb init`, then `kb ingest FOLDER --wait`,
    then `kb ask "question"` or `kb serve` for the web UI.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from app.cli import admin

    for module in (admin,):
        for command in module.COMMANDS:
            cli.add_command(command)
    # Groups that need the heavier pipeline modules register themselves if present.
    import importlib

    for name in ("docs", "query", "models_cmds", "pii_cmds", "eval_cmds", "audit_cmds", "serve", "api_cmds",
                 "ops_cmds", "db_cmds"):
        try:
            module = importlib.import_module(f"app.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.cli.{name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    try:
        rv = cli.main(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KbError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
