"""Build the configured generator: one entry per backend, keyed by ``llm.backend``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from app import foreground
from app.errors import ConfigError, KbError
from app.settings import LlmSettings
from llm.llamacpp import LlamaCppGenerator
from llm.models import default_model_path
from llm.openai_compat import OpenAICompatGenerator
from llm.repetition import LoopGuard
from llm.sampling import Sampling
from llm.types import Generator

log = logging.getLogger(__name__)


def _llamacpp(cfg: LlmSettings, models_dir: Path) -> Generator:
    path = cfg.model_path or default_model_path(models_dir, cfg.model)
    return LlamaCppGenerator(
        path,
        sha256=cfg.model_sha256,
        n_ctx=cfg.n_ctx,
        n_gpu_layers=cfg.n_gpu_layers,
        n_threads=cfg.n_threads,
        n_threads_batch=cfg.n_threads_batch,
        n_batch=cfg.n_batch,
        sampling=Sampling.from_settings(cfg),
        loop_guard=LoopGuard.from_settings(cfg),
        foreground_lock=foreground.lock_path(models_dir),
        allow_unverified=cfg.allow_unverified_model,
    )


def _openai(cfg: LlmSettings, models_dir: Path) -> Generator:
    if not cfg.openai_base_url:
        raise ConfigError(
            "llm.backend is 'openai' but llm.openai_base_url is not set (KB_LLM__OPENAI_BASE_URL)."
        )
    key = cfg.openai_api_key.get_secret_value() if cfg.openai_api_key else None
    return OpenAICompatGenerator(
        cfg.openai_base_url,
        cfg.openai_model,
        api_key=key,
        timeout=cfg.openai_timeout,
        context_window=cfg.n_ctx,
        sampling=Sampling.from_settings(cfg),
        loop_guard=LoopGuard.from_settings(cfg),
    )


def _failover(cfg: LlmSettings, models_dir: Path) -> Generator:
    """The generators of llm.failover_order, tried in order (llm/failover.py)."""
    from llm.failover import FailoverGenerator, Member, http_probe

    if not cfg.failover_order:
        raise ConfigError("llm.backend is 'failover' but llm.failover_order is empty.")
    members, problems = [], []
    for name in dict.fromkeys(cfg.failover_order):  # each backend once, first place wins
        try:
            gen = GENERATORS[name](cfg, models_dir)
        except KbError as exc:  # e.g. no local model pulled: the pool runs with the others
            log.warning("generator %s left out of the failover pool: %s", name, exc)
            problems.append(f"{name}: {exc}")
            continue
        probe = None
        if name == "openai":
            key = cfg.openai_api_key.get_secret_value() if cfg.openai_api_key else None
            probe = http_probe(cfg.openai_base_url or "", key, cfg.failover_probe_timeout)
        members.append(Member(name, gen, probe))
    if not members:
        raise ConfigError("No generator of llm.failover_order can be built: " + "; ".join(problems))
    return FailoverGenerator(members, cfg.failover_after, cfg.failover_check_seconds)


GENERATORS: dict[str, Callable[[LlmSettings, Path], Generator]] = {
    "llamacpp": _llamacpp,
    "openai": _openai,
    "failover": _failover,
}


def build_generator(cfg: LlmSettings, models_dir: Path) -> Generator:
    """Cheap: nothing is loaded or contacted until the first count_tokens/stream call."""
    try:
        factory = GENERATORS[cfg.backend]
    except KeyError:
        raise ConfigError(
            f"Unknown llm.backend {cfg.backend!r}; choose one of {sorted(GENERATORS)}."
        ) from None
    return factory(cfg, models_dir)
