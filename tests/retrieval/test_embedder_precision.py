"""Reduced-precision embedding (bf16, int8) agrees with fp32 on the real small model."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import ConfigError
from app.settings import RetrievalSettings
from retrieval.embedder import PRECISIONS, SentenceTransformerEmbedder, native_bf16, resolve_precision

pytestmark = pytest.mark.slow

SENTENCES = [
    "A cat is sleeping on the sofa.",
    "Vitamin D deficiency is associated with a higher risk of bone fractures in older adults.",
    "The central bank raised interest rates to curb inflation.",
    "Mutations in the BRCA1 gene increase the lifetime risk of breast cancer.",
    "Das Treffen wurde auf nächsten Dienstag verschoben.",
]
# Each query's best passage under fp32; a reduced precision must keep the same winner.
QUERIES = {
    "where is the cat resting?": 0,
    "low vitamin D and broken bones in the elderly": 1,
    "monetary policy against rising prices": 2,
    "hereditary breast cancer genes": 3,
}


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(precision="fp32")


@pytest.mark.parametrize(("precision", "min_cos"), [("bf16", 0.99), ("int8", 0.95)])
def test_reduced_precision_agrees_with_fp32(fp32: SentenceTransformerEmbedder, precision: str, min_cos: float) -> None:
    emb = SentenceTransformerEmbedder(precision=precision)  # type: ignore[arg-type]
    assert emb.active_precision == precision and fp32.active_precision == "fp32"
    ref, vecs = fp32.embed_passages(SENTENCES), emb.embed_passages(SENTENCES)
    assert vecs.dtype == np.float32 and vecs.shape == ref.shape
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (ref * vecs).sum(axis=1)
    assert cos.min() > min_cos, cos
    assert not np.array_equal(ref, vecs)  # really a different arithmetic, not the fp32 model again
    queries = emb.embed_queries(list(QUERIES))
    assert (fp32.embed_queries(list(QUERIES)) @ ref.T).argmax(axis=1).tolist() == list(QUERIES.values())
    assert (queries @ vecs.T).argmax(axis=1).tolist() == list(QUERIES.values())


def test_auto_picks_bf16_only_where_the_hardware_has_it() -> None:
    emb = SentenceTransformerEmbedder()  # the default, as the settings default
    assert RetrievalSettings().embed_precision == emb.precision == "auto"
    assert emb.active_precision == ("bf16" if native_bf16("cpu") else "fp32")
    # An explicit request for what auto chose shares the process's model instead of loading another.
    assert SentenceTransformerEmbedder(precision=emb.active_precision).model is emb.model  # type: ignore[arg-type]
    assert SentenceTransformerEmbedder(precision="fp32").model is not SentenceTransformerEmbedder(
        precision="int8").model


def test_bad_precision_is_a_config_error() -> None:
    assert set(PRECISIONS) == {"auto", "fp32", "bf16", "int8"}
    with pytest.raises(ConfigError, match="Unknown embedding precision 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_precision("int8", "cuda:0")
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "mps") == "fp32"


def test_max_tokens_truncates_what_is_embedded(fp32: SentenceTransformerEmbedder) -> None:
    short = SentenceTransformerEmbedder(precision="fp32", max_tokens=8)
    assert short.max_tokens == 8 and fp32.max_tokens == 256
    head = "Mutations in the BRCA1 gene increase"
    long_text = head + " the lifetime risk of breast cancer, " * 10
    # Only the first 8 word pieces (with [CLS]/[SEP]) are read, so the tail no longer matters.
    a, b = short.embed_passages([long_text, head + " something else entirely and more words"])
    assert float(a @ b) > 0.999
    full = fp32.embed_passages([long_text])[0]
    assert float(full @ a) < 0.99
