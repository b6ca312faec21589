"""BM25: English and Chinese retrieval, ACL filtering, incremental add/remove, statistics-only persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.errors import KbError
from retrieval.lexical import BM25Index

ENGLISH = {
    101: "The mitochondria is the powerhouse of the cell and produces ATP through respiration.",
    102: "Photosynthesis in plants converts sunlight, water and carbon dioxide into glucose.",
    103: "Vaccines train the immune system to recognise viruses such as influenza.",
    104: "The stock market fell sharply after the central bank raised interest rates.",
    105: "Running shoes with good cushioning reduce injuries for marathon runners.",
}
CHINESE = {
    201: "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    202: "熊猫主要生活在四川的山区，以竹子为食。",
    203: "长江是中国最长的河流，流经上海注入东海。",
    204: "人工智能技术正在改变医疗诊断和药物研发。",
}


@pytest.fixture(params=["jieba", "bigram"])
def index(request: pytest.FixtureRequest) -> BM25Index:
    idx = BM25Index(tokenizer=request.param)
    idx.add(list(ENGLISH), list(ENGLISH.values()))
    idx.add(list(CHINESE), list(CHINESE.values()))
    return idx


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how do cells produce energy in mitochondria", 101),
        ("plant photosynthesis glucose", 102),
        ("vaccine for the flu virus", 103),  # plural/singular folded by the stemmer
        ("interest rate rises and stocks", 104),
        ("marathon runner injury", 105),
        ("哪个城市是首都和文化中心", 201),
        ("熊猫吃什么", 202),
        ("中国最长的河流", 203),
        ("人工智能在医疗中的应用", 204),
    ],
)
def test_finds_the_right_document(index: BM25Index, query: str, expected: int) -> None:
    hits = index.search(query, 3)
    assert hits and hits[0][0] == expected
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_score_matches_hand_computed_bm25() -> None:
    idx = BM25Index(k1=1.2, b=0.75)
    idx.add([1, 2, 3], ["apple banana apple", "banana cherry", "cherry date elderberry fig"])
    # query "apple": df=1, N=3; doc 1 has tf=2, len=3; avgdl=(3+2+4)/3=3
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    expected = idf * 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 3))
    hits = idx.search("apple", 5)
    assert hits == [(1, pytest.approx(expected, rel=1e-5))]
    assert idx.score("apple", [1, 2, 99]) == {1: pytest.approx(expected, rel=1e-5), 2: 0.0}


def test_allowed_filters_before_topk(index: BM25Index) -> None:
    everything = {i for i, _ in index.search("the cell plants immune market shoes", 10)}
    assert len(everything) >= 4
    hits = index.search("mitochondria cell photosynthesis plants", 1, allowed={102, 999})
    assert hits == [(102, pytest.approx(hits[0][1]))]
    assert index.search("mitochondria", 5, allowed={102}) == []
    assert index.search("mitochondria", 5, allowed=set()) == []
    assert index.search("mitochondria", 5, allowed=np.array([101]))[0][0] == 101


def test_remove_and_replace(index: BM25Index) -> None:
    before = index.search("panda bamboo 熊猫", 5)
    assert before[0][0] == 202
    index.remove([202, 12345])
    assert 202 not in {i for i, _ in index.search("熊猫 竹子", 5)}
    assert len(index) == len(ENGLISH) + len(CHINESE) - 1
    index.add([101], ["Giant pandas eat bamboo in the mountains of Sichuan."])  # replaces 101's text
    assert index.search("mitochondria", 5) == []
    assert index.search("pandas bamboo", 1)[0][0] == 101
    assert len(index) == len(ENGLISH) + len(CHINESE) - 1


def test_many_incremental_batches_match_one_batch() -> None:
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    docs = {i: " ".join(rng.choice(words, size=rng.integers(5, 40))) for i in range(2000)}
    one = BM25Index()
    one.add(list(docs), list(docs.values()))
    inc = BM25Index()
    items = list(docs.items())
    for start in range(0, len(items), 37):  # many small segments get merged along the way
        batch = items[start : start + 37]
        inc.add([i for i, _ in batch], [t for _, t in batch])
    assert len(inc._segments) <= 12
    for q in ("w1 w2 w3", "w299", "w10 w10 w200"):
        a, b = one.search(q, 20), inc.search(q, 20)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-5)
    # removing most documents compacts and still agrees with an index built without them
    gone = list(range(0, 2000, 3)) + list(range(1, 2000, 3))
    inc.remove(gone)
    rest = {i: t for i, t in docs.items() if i not in set(gone)}
    fresh = BM25Index()
    fresh.add(list(rest), list(rest.values()))
    assert [i for i, _ in inc.search("w5 w6", 30)] == [i for i, _ in fresh.search("w5 w6", 30)]


def test_round_trip_keeps_results_and_no_text(index: BM25Index) -> None:
    index.remove([104])
    blob = index.to_bytes()
    assert isinstance(blob, bytes)
    # statistics only: whole sentences are not in the bytes (single terms are, as vocabulary)
    assert b"powerhouse of the cell" not in blob
    assert "中华人民共和国的首都".encode() not in blob
    restored = BM25Index.from_bytes(blob)
    assert len(restored) == len(index)
    assert restored.tokenize.config() == index.tokenize.config()
    for q in ("mitochondria energy", "熊猫吃什么", "stock market", "长江 上海"):
        a, b = restored.search(q, 5), index.search(q, 5)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-5)
    restored.add([301], ["A new document about glaciers melting."])
    assert restored.search("glacier", 1)[0][0] == 301


def test_corrupt_bytes_raise_kb_error() -> None:
    with pytest.raises(KbError, match="kb index rebuild"):
        BM25Index.from_bytes(b"garbage")


def test_empty_index_and_empty_query() -> None:
    idx = BM25Index()
    assert idx.search("anything", 5) == []
    idx.add([1], ["some text"])
    assert idx.search("", 5) == []
    assert idx.search("the and of", 5) == []  # stop words only
