"""The loop guard: real looping outputs are cut to one copy, legitimate repetition is left alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm.repetition import AnswerStream, LoopGuard, RepetitionGuard, cut_repetition, guarded, normalize_segment

# What the small default model produced before the guard (shortened only in the count of repeats).
EN_LOOP = ("Yes, the office allows pets on Fridays [1]. The pets are:\n\n"
           + "A petting zoo with a cat [1]. " * 12)
ZH_LOOP = "根据资料[2]，" + "张世昌的职业是足球运动员，他曾效力于北京国安队。" * 20
NUMBERED_LOOP = "The documents list:\n" + "".join(f"{i}. A petting zoo with a cat [1]\n" for i in range(1, 14))
PHRASE_LOOP = "张世昌的职业是白磊，它是一个白磊的职称。" + "白磊是一种白磊的职称，" * 15
INTERLEAVED_LOOP = "Leave rules: " + "Staff get 25 days [1]. Requests go to the manager [2]. " * 6

LEGIT = {
    "list with repeated markers": (
        "Staff may bring:\n- Cats [1]\n- Dogs [1]\n- Birds [2]\n- Fish [1]\n- Rabbits [1][2]\n"
        "- Hamsters [1]\n- Turtles [1]\n"),
    "table sharing words": (
        "| Leave | Days | Source |\n|---|---|---|\n| Annual leave | 25 days | [1] |\n"
        "| Sick leave | 10 days | [1] |\n| Parental leave | 20 days | [1] |\n| Study leave | 5 days | [1] |\n"
        "| Unpaid leave | 30 days | [2] |\n"),
    "markers after every sentence": (
        "Annual leave is 25 days [1]. It expires at the end of March [1]. Requests go to the manager [1]. "
        "They must be made two weeks ahead [1]. Unused days are not paid out [1]."),
    "sentences with the same opening": (
        "The policy applies to all staff [1]. The policy applies from 1 March [2]. The policy applies "
        "to part-time contracts pro rata [2]. The policy applies abroad as well [3]."),
    "chinese answer": (
        "员工每年有二十五天年假[1]。未使用的年假在三月底作废[1]。申请需提前两周提交给直属经理[2]。"
        "病假需要医生证明[3]。"),
    "rules and dots": "Summary\n" + "=" * 40 + "\nSee page 3 " + "." * 30 + " [1]\n" + "-" * 60 + "\n",
    "repeated marker run": "Both sources agree [1][2][1][2][1][2].",
    "a sentence said twice": (
        "The deadline is 31 March [1]. Late requests are refused [2]. The deadline is 31 March [1]."),
    "numbered steps": "".join(f"{i}. Open the form for step {i} and sign it [1].\n" for i in range(1, 9)),
}


def chunked(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


@pytest.mark.parametrize(
    ("text", "kept", "kind"),  # kind: which check may fire first
    [
        (EN_LOOP, "Yes, the office allows pets on Fridays [1]. The pets are:\n\nA petting zoo with a cat [1].",
         "tandem sentence"),
        (ZH_LOOP, "根据资料[2]，张世昌的职业是足球运动员，他曾效力于北京国安队。", "tandem"),
        (NUMBERED_LOOP, "The documents list:\n1. A petting zoo with a cat [1]", "sentence"),
        (PHRASE_LOOP, "张世昌的职业是白磊，它是一个白磊的职称。白磊是一种白磊的职称，", "tandem"),
        (INTERLEAVED_LOOP, "Leave rules: Staff get 25 days [1]. Requests go to the manager [2].", "tandem"),
    ],
    ids=["english", "chinese", "numbered", "chinese-phrase", "two-sentence-unit"],
)
@pytest.mark.parametrize("size", [1, 3, 7, 10_000])
def test_a_loop_is_cut_to_one_copy(text: str, kept: str, kind: str, size: int) -> None:
    stream = AnswerStream(chunked(text, size))
    deltas = list(stream)
    assert "".join(deltas) == kept == stream.text
    assert stream.finish_reason == "repetition" and stream.cut
    assert stream.repetition is not None and stream.repetition.kind in kind.split()
    assert stream.repetition.copies >= 3 and stream.repetition.kept_chars == len(kept)
    assert text.startswith(stream.generated) and len(stream.generated) > len(kept)


@pytest.mark.parametrize("text", list(LEGIT.values()), ids=list(LEGIT))
@pytest.mark.parametrize("size", [1, 4, 10_000])
def test_legitimate_text_is_not_cut(text: str, size: int) -> None:
    stream = AnswerStream(chunked(text, size))
    assert "".join(stream) == text
    assert stream.finish_reason == "stop" and stream.repetition is None


def test_emitted_text_is_always_a_prefix_of_the_final_answer() -> None:
    """Nothing shown to the user is ever taken back: repeats are held, then dropped or released."""
    for text in (EN_LOOP, ZH_LOOP, NUMBERED_LOOP, *LEGIT.values()):
        g = RepetitionGuard()
        shown = ""
        for piece in chunked(text, 2):
            shown += g.feed(piece)
        final = shown + g.finish()
        assert final.startswith(shown)
        assert cut_repetition(text)[0] == final


def test_a_one_off_repeat_is_held_then_released() -> None:
    g = RepetitionGuard()
    first = g.feed("Leave is 25 days [1]. ")
    held = g.feed("Leave is 25 days [1].")
    assert first == "Leave is 25 days [1]." and held == ""  # could be the start of a loop
    released = g.feed(" Requests go to the manager [2].")
    whole = "Leave is 25 days [1]. Leave is 25 days [1]. Requests go to the manager [2]."
    assert first + released + g.finish() == whole


def test_the_backend_stream_is_closed_and_its_finish_reason_kept() -> None:
    closed = []

    def backend(text: str, reason: str) -> Iterator[str]:
        try:
            yield from chunked(text, 5)
            return reason
        finally:
            closed.append(True)

    looping = AnswerStream(backend(EN_LOOP + "tail " * 100, "length"))
    list(looping)
    assert looping.finish_reason == "repetition" and closed == [True]
    assert looping.generated.count("A petting zoo") == 3  # generation stopped at the third copy

    ended = AnswerStream(backend("Twenty-five days [1].", "length"))
    assert "".join(ended) == "Twenty-five days [1]." and ended.finish_reason == "length"
    plain = AnswerStream(iter(["a", "b"]))
    assert list(plain) == ["a", "b"] and plain.finish_reason == "stop"


def test_the_guard_can_be_off_and_thresholds_tuned() -> None:
    off = AnswerStream(chunked(EN_LOOP, 4), guard=None)
    assert "".join(off) == EN_LOOP and off.finish_reason == "stop"
    patient = AnswerStream(chunked(EN_LOOP, 4), LoopGuard(min_repeats=20))
    assert "".join(patient) == EN_LOOP
    assert guarded(off) is off


def test_segments_compare_without_numbering_markers_and_case() -> None:
    assert normalize_segment("  3. A Petting zoo with a cat [1][2].") == "a petting zoo with a cat"
    assert normalize_segment("（2）年假为十五天［1］。") == "年假为十五天"
    assert normalize_segment("- Cats [1, 2]") == "cats"


def test_pages_of_newlines_are_a_loop_but_a_rule_is_not() -> None:
    text = "Twenty-five days [1]." + "\n" * 400
    out, rep = cut_repetition(text)
    assert out == "Twenty-five days [1]." and rep is not None
    rule = "Summary\n" + "-" * 120 + "\nTwenty-five days [1]."
    assert cut_repetition(rule) == (rule, None)
