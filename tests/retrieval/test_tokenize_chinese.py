"""Chinese BM25 options: full-width folding, bigram back-off for words jieba does not know, a user dictionary,
and that the options travel with a saved index."""

from __future__ import annotations

from pathlib import Path

from retrieval.lexical import BM25Index
from retrieval.tokenize import Tokenizer, fold_width


def test_full_width_letters_digits_and_spaces_fold_to_ascii_but_han_stays() -> None:
    assert fold_width("ＧＤＰ　２０２３年增长５％") == "GDP 2023年增长5%"
    tok = Tokenizer(fold_width=True)
    assert tok("ＧＤＰ２０２３") == tok("GDP2023") == ["gdp2023"]
    assert Tokenizer()("ＧＤＰ") != ["gdp"]  # off: the full-width form is a different term


def test_oov_words_also_index_their_bigrams() -> None:
    word = "尚恩菲南效力于"  # a transliterated name jieba's dictionary lacks: its HMM keeps "尚恩菲南" whole
    plain, backed = Tokenizer()(word), Tokenizer(oov_bigrams=True)(word)
    assert set(plain) <= set(backed)
    extra = set(backed) - set(plain)
    assert {"尚恩", "恩菲", "菲南"} <= extra and all(len(t) == 2 for t in extra)
    assert Tokenizer(oov_bigrams=True)("北京大学") == Tokenizer()("北京大学")  # known words: nothing added


def test_a_user_dictionary_keeps_a_domain_term_whole(tmp_path: Path) -> None:
    term = "鲲鹏数据湖"  # jieba alone: 鲲鹏 / 数据 / 湖
    assert term not in Tokenizer()(f"我们部署了{term}平台")
    d = tmp_path / "terms.txt"
    d.write_text(f"{term} 100 nz\n", encoding="utf-8")
    assert term in Tokenizer(user_dict=str(d))(f"我们部署了{term}平台")


def test_a_missing_user_dictionary_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match="does not exist"):
        Tokenizer(user_dict=str(tmp_path / "none.txt"))("中文")


def test_options_survive_a_snapshot() -> None:
    index = BM25Index(fold_width=True, oov_bigrams=True)
    index.add([1, 2], ["ＡＰＩ网关的限流配置", "数据库备份每晚两点运行"])
    again = BM25Index.from_bytes(index.to_bytes())
    assert again.tokenize.config() == index.tokenize.config()
    assert [cid for cid, _ in again.search("API网关", 2)][0] == 1
