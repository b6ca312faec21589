import re

import pytest

from app.text import split_sentences
from ingest.chunking import chunk_sections
from ingest.types import Section


def words(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer: one token per word or CJK character."""
    return [m.span() for m in re.finditer(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+", text)]


def test_cjk_and_latin_sentence_ends():
    text = "第一句。第二句！第三句？第四句；Then English. And more! Done"
    parts = [text[a:b] for a, b in split_sentences(text)]
    assert parts == ["第一句。", "第二句！", "第三句？", "第四句；", "Then English.", "And more!", "Done"]


def test_chunks_respect_size_and_overlap():
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(40)]
    chunks = chunk_sections([Section(" ".join(sentences))], words, size=30, overlap=8)
    assert len(chunks) > 5
    assert all(c.n_tokens <= 30 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        last = a.text.split(". ")[-1].rstrip(".")
        assert last in b.text  # the last sentence is carried over
    joined = " ".join(c.text for c in chunks)
    assert all(s.rstrip(".") in joined for s in sentences)  # nothing lost


def test_positions_follow_pages_and_headings():
    long = " ".join(["Alpha beta gamma delta."] * 10)
    sections = [Section(long, page=1), Section(long, page=2), Section("Short tail.", page=3, heading="Annex")]
    tiny = [Section("Row one.", sheet="S1"), Section("Row two.", sheet="S1"), Section("Row three.", sheet="S2")]
    merged = chunk_sections(tiny, words, size=50, overlap=0)
    assert len(merged) == 1 and merged[0].sheet == "S1"  # crumbs merge instead of one chunk per row
    chunks = chunk_sections(sections, words, size=40, overlap=0)
    assert {c.page for c in chunks} == {1, 2, 3}
    annex = [c for c in chunks if c.heading == "Annex"]
    assert annex and annex[0].text.startswith("Annex\n")


def test_overlong_sentence_is_cut_at_token_boundaries():
    text = " ".join(f"w{i}" for i in range(95))
    chunks = chunk_sections([Section(text)], words, size=20, overlap=0)
    assert [c.n_tokens for c in chunks] == [20, 20, 20, 20, 15]
    assert " ".join(c.text for c in chunks) == text


def test_chinese_text_chunks_with_real_tokenizer():
    pytest.importorskip("sentence_transformers")
    from retrieval.embedder import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    text = "根据本行规定，客户须在办理业务时出示有效身份证件。" * 30
    chunks = chunk_sections([Section(text, page=4)], emb.token_spans, size=64, overlap=16)
    assert len(chunks) > 3 and all(c.page == 4 for c in chunks)
    assert all(emb.count_tokens(c.text) <= 64 + 2 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)
