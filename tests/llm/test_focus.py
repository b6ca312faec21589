from llm.focus import GAP, focus_passages
from retrieval.tokenize import Tokenizer

TERMS = Tokenizer()


def words(text: str) -> int:
    return len(text.split())


PASSAGE = ("The town hall opened in 1890. It was designed by a local architect. The roof was rebuilt after a fire. "
           "Sweyn Forkbeard forced King Ethelred from his kingdom in 1013. Ethelred fled to Normandy. "
           "The market is held on Saturdays. Parking is free on Sundays.")


def test_keeps_the_matching_sentence_and_its_neighbours_in_document_order():
    out = focus_passages("Who forced Ethelred out of his kingdom?", [PASSAGE], TERMS, words, 20)[0]
    assert "Sweyn Forkbeard forced King Ethelred from his kingdom in 1013." in out
    assert "Ethelred fled to Normandy." in out
    assert "market" not in out and "town hall" not in out
    assert out.startswith("…") and out.endswith("…")
    assert out.index("Sweyn") < out.index("Normandy")
    assert words(out.replace("…", "")) <= 20


def test_gaps_between_separate_matches_are_marked():
    out = focus_passages("When was the town hall opened and when is the market held?", [PASSAGE], TERMS, words, 16)[0]
    assert "The town hall opened in 1890." in out and "The market is held on Saturdays." in out
    assert GAP.strip() in out.split("1890.")[1].split("The market")[0]


def test_short_passages_and_a_zero_budget_are_kept_whole():
    short = "Parking is free on Sundays."
    assert focus_passages("parking?", [short, PASSAGE], TERMS, words, 10)[0] == short
    assert focus_passages("parking?", [PASSAGE], TERMS, words, 0) == [PASSAGE]


def test_the_first_passage_gets_its_own_budget():
    first, second = focus_passages("Ethelred kingdom", [PASSAGE, PASSAGE], TERMS, words, 8, first_budget=40)
    assert words(first) > words(second)
    assert "Sweyn Forkbeard forced King Ethelred" in second


def test_chinese_sentences():
    text = ("本办法适用于全体员工。员工在北京出差，每晚住宿费最多六百元。在上海出差，每晚住宿费最多五百元。"
            "报销须在出差结束后三十日内提交。年度体检安排在每年五月。")
    out = focus_passages("在上海出差每晚住宿费最多多少？", [text], TERMS, len, 40)[0]
    assert "在上海出差，每晚住宿费最多五百元。" in out
    assert "体检" not in out


def test_an_over_long_best_sentence_is_kept_for_the_prompt_to_truncate():
    long = "Ethelred " * 50 + "ruled. Another sentence here."
    out = focus_passages("Ethelred", [long], TERMS, words, 5)[0]
    assert out.startswith("Ethelred") and "Another" not in out
