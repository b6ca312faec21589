"""Pick the embedder implementation from settings (one implementation per file, chosen here).

``auto`` uses OpenVINO (int8, ~2.5x faster than PyTorch bf16 at the same retrieval quality) on a CPU
when it is installed, and PyTorch when a CUDA GPU is present or OpenVINO is missing.
"""

from __future__ import annotations

from pathlib import Path

from app.errors import ConfigError
from retrieval.embedder import PrefixedEmbedder, SentenceTransformerEmbedder

BACKENDS = ("auto", "torch", "openvino")


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown embedder backend {backend!r}; use one of {', '.join(BACKENDS)} "
                          "(KB_RETRIEVAL__EMBED_BACKEND).")
    from retrieval import embedder_openvino

    if backend == "openvino" and not embedder_openvino.available():
        raise ConfigError("The OpenVINO embedder backend needs the openvino and nncf packages "
                          "(pip install openvino nncf), or set KB_RETRIEVAL__EMBED_BACKEND=torch.")
    if backend != "auto":
        return backend
    import torch

    return "openvino" if embedder_openvino.available() and not torch.cuda.is_available() else "torch"


def build_embedder(backend: str, model: str, query_prefix: str, passage_prefix: str, *, batch_size: int,
                   precision: str, max_tokens: int | None, cache_dir: Path) -> PrefixedEmbedder:
    if resolve_backend(backend) == "openvino":
        from retrieval.embedder_openvino import OpenVinoEmbedder

        return OpenVinoEmbedder(model, query_prefix, passage_prefix, cache_dir=cache_dir, batch_size=batch_size,
                                precision=precision, max_tokens=max_tokens)
    return SentenceTransformerEmbedder(model, query_prefix, passage_prefix, batch_size=batch_size,
                                       precision=precision, max_tokens=max_tokens)  # type: ignore[arg-type]
