"""kb serve: the ingestion worker and the web UI together, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from app.cli import Ctx, pass_ctx
from app.errors import ConfigError

# ui/server.py wraps ui/app.py in an st.App that adds the session-cookie routes (Streamlit runs it with uvicorn)
UI_SCRIPT = Path(__file__).resolve().parents[2] / "ui" / "server.py"
STOP_GRACE_S = 15.0


def streamlit_command(script: Path, host: str, port: int, max_upload_mb: float) -> list[str]:
    """Streamlit, headless and quiet: no usage statistics, no file watcher, no error details for users."""
    return [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--server.maxUploadSize", str(max(1, int(max_upload_mb))),
        "--server.enableXsrfProtection", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal", "--client.showErrorDetails", "none",
        "--theme.base", "light",
    ]


def _preflight(container) -> None:
    """Fail early, with what to do, instead of showing a broken page to the first user."""
    from app import accounts, migrate

    engine = container.engine
    if migrate.current_revision(engine) != migrate.head_revision(engine):
        raise ConfigError("The database is not initialised or not up to date. Run `kb init` first.")
    with container.sessions() as s:
        if accounts.count_admins(s) == 0:
            raise ConfigError("There is no admin account yet. Run `kb init` first.")
    _ = container.vault  # the master key must be readable
    if container.settings.llm.backend == "llamacpp" and container.settings.llm.model_path is None:
        from llm.models import default_model_path

        try:
            default_model_path(container.settings.models_dir)
        except Exception as exc:
            click.echo(f"warning: {exc} Questions will fail until a model is there.", err=True)


def _die_with_parent() -> None:
    """Runs in each child before exec: on Linux it gets SIGTERM when kb serve dies, even by kill -9,
    so no orphaned UI or worker keeps the port (the next kb serve starts at once)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass  # not Linux: children still stop with the normal shutdown path


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"{name} did not stop in {STOP_GRACE_S:.0f} s; killing it", err=True)
            p.kill()
            p.wait()


@click.command()
@click.option("--port", type=int, help="Port of the web UI (default: ui.port, 8501).")
@click.option("--host", help="Address to listen on (default: ui.host, 127.0.0.1; 0.0.0.0 for every interface).")
@click.option("--no-worker", is_flag=True, help="Run only the UI (workers run elsewhere, e.g. `kb worker`).")
@click.option("--api-port", type=int, help="Port of the HTTP API (default: api.port, 8000).")
@click.option("--no-api", is_flag=True, help="Do not start the HTTP API (`kb api` runs it alone).")
@pass_ctx
def serve(ctx: Ctx, port: int | None, host: str | None, no_worker: bool, api_port: int | None,
          no_api: bool) -> None:
    """Start the web UI, the HTTP API and an ingestion worker; Ctrl-C (or SIGTERM) stops them all.

    Run `kb init` and `kb models pull` first (`make run` does all three).
    """
    c = ctx.container
    ui = c.settings.ui
    host, port = host or ui.host, port or ui.port
    _preflight(c)
    env = {**os.environ, "KB_UI__HOST": host, "KB_UI__PORT": str(port),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_term(*_):
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if not no_worker:
            procs["worker"] = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env,
                                               preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads yet
        procs["ui"] = subprocess.Popen(streamlit_command(UI_SCRIPT, host, port, ui.max_upload_mb), env=env,
                                       preexec_fn=_die_with_parent)
        if not no_api:
            api_port = api_port or c.settings.api.port
            procs["api"] = subprocess.Popen([sys.executable, "-m", "app", "api", "--host", host, "--port",
                                             str(api_port)], env=env, preexec_fn=_die_with_parent)
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1") else host  # noqa: S104 (display only)
        click.echo(f"kb is running at http://{shown}:{port}" + ("" if no_api else
                   f", its API at http://{shown}:{api_port}/v1") + "  (Ctrl-C stops them)")
        while not stopping:
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead:
                click.echo(f"error: the {' and the '.join(dead)} stopped unexpectedly "
                           f"(exit code {procs[dead[0]].returncode}); stopping the rest.", err=True)
                _stop(procs)
                sys.exit(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping…", err=True)
        _stop(procs)
        signal.signal(signal.SIGTERM, previous)
    click.echo("kb stopped", err=True)


COMMANDS = [serve]
