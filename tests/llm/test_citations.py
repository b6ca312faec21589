from __future__ import annotations

import pytest

from llm.citations import attribute_citations, check_citations


@pytest.mark.parametrize(
    ("answer", "n", "clean", "cited", "invalid"),
    [
        ("Leave is 25 days [1].", 3, "Leave is 25 days [1].", [1], []),
        ("Both agree [1,2].", 3, "Both agree [1][2].", [1, 2], []),
        ("Both agree [1, 2] and [3].", 3, "Both agree [1][2] and [3].", [1, 2, 3], []),
        ("See [2][1].", 3, "See [2][1].", [2, 1], []),
        ("All three [1-3].", 3, "All three [1][2][3].", [1, 2, 3], []),
        ("All three [1–3].", 3, "All three [1][2][3].", [1, 2, 3], []),
        ("年假为十五天【1】。", 2, "年假为十五天[1]。", [1], []),
        ("见［1，2］和【２】。", 2, "见[1][2]和[2]。", [1, 2], []),
        ("见[1、2]。", 2, "见[1][2]。", [1, 2], []),
        # Unknown numbers are stripped (with the space before them) and reported.
        ("Made up [7].", 3, "Made up.", [], [7]),
        ("Mixed [2, 9] and [0].", 3, "Mixed [2] and.", [2], [9, 0]),
        ("Range past the end [2-5].", 3, "Range past the end [2][3].", [2, 3], [4, 5]),
        ("Absurd range [1-100000].", 3, "Absurd range.", [], [1, 100000]),
        ("Repeated [1] then [1] again.", 2, "Repeated [1] then [1] again.", [1], []),
        # Not citations: no digits, or decimals, or links with words.
        ("Use [a] or [1.5] or [see 1].", 2, "Use [a] or [1.5] or [see 1].", [], []),
        ("No sources at all.", 0, "No sources at all.", [], []),
        ("Nothing can be valid [1].", 0, "Nothing can be valid.", [], [1]),
    ],
)
def test_check_citations(answer: str, n: int, clean: str, cited: list[int], invalid: list[int]) -> None:
    assert check_citations(answer, n) == (clean, cited, invalid)


def test_attribution_marks_the_sentence_its_words_come_from() -> None:
    passages = ["The archive opens at nine in the morning and closes at five.",
                "Los Angeles has a population of about 3.3 million people."]
    marked, cited = attribute_citations(
        "The city with a population of 3.3 million people is Los Angeles. Penguins are birds.", passages)
    assert cited == [2]
    # a decimal point is not a sentence end: the marker goes after the sentence, not inside the number
    assert marked == "The city with a population of 3.3 million people is Los Angeles [2]. Penguins are birds."
    marked, cited = attribute_citations("档案室早上九点开门。", ["档案室早上九点开门，下午五点关门。"])
    assert cited == [1] and marked == "档案室早上九点开门 [1]。"


def test_attribution_leaves_cited_short_and_unsupported_sentences_alone() -> None:
    passages = ["The archive opens at nine in the morning and closes at five."]
    for answer in ("The archive opens at nine [1].", "Yes.", "Penguins cannot fly at all, sadly."):
        assert attribute_citations(answer, passages) == (answer, [])
    # a marker after the sentence's end punctuation is its citation, not the next sentence's
    for answer in ("The archive opens at nine. [1]", "档案室早上九点开门？[1]"):
        assert attribute_citations(answer, [*passages, "档案室早上九点开门。"]) == (answer, [])


def test_markers_echoed_after_the_sentence_are_dropped() -> None:
    assert check_citations("They survive in Jersey [1]. [1]", 3)[0] == "They survive in Jersey [1]."
    assert check_citations("A and B [1][2]。[1][2]", 3)[0] == "A and B [1][2]。"
    kept = "It opens at nine [1]. It closes at five [1]."  # two sentences citing one source stay as written
    assert check_citations(kept, 3)[0] == kept
