from __future__ import annotations

import random

import pytest

from llm.reasoning import ReasoningSplitter, split_reasoning, template_prefills_think

# (model output, think_prefilled, expected reasoning, expected answer, expected unclosed)
CASES = [
    ("<think>Let me think.\nStep 1: 2+2.</think>\n\nThe answer is 4.", False,
     "Let me think.\nStep 1: 2+2.", "The answer is 4.", False),
    # R1 templates pre-fill <think>: only the closing tag shows up in the output.
    ("Okay, the user asks about leave.\nThe passage [2] says 25 days.\n</think>\n\nStaff get 25 days [2].",
     False, "Okay, the user asks about leave.\nThe passage [2] says 25 days.", "Staff get 25 days [2].", False),
    ("Okay, the user asks about leave.\n</think>\n\nStaff get 25 days [2].", True,
     "Okay, the user asks about leave.", "Staff get 25 days [2].", False),
    # Cut off by max_tokens while still reasoning.
    ("<think>I am still thinking about the", False, "I am still thinking about the", "", True),
    ("Still thinking with the tag pre-filled", True, "Still thinking with the tag pre-filled", "", True),
    ("A plain answer without reasoning [1].", False, "", "A plain answer without reasoning [1].", False),
    ("<think>\n\n</think>\n\nHi there.", False, "", "Hi there.", False),
    # Angle brackets that are not tags pass through untouched.
    ("if a < b and <thin ice> or </thinking> stays", False, "",
     "if a < b and <thin ice> or </thinking> stays", False),
    # Some models repeat the <think> their template already opened.
    ("<think>\nhmm, check [1]</think>ok", True, "hmm, check [1]", "ok", False),
    ("<think>用户问的是年假天数。资料[1]写明为十五天。</think>\n\n年假为十五天[1]。", False,
     "用户问的是年假天数。资料[1]写明为十五天。", "年假为十五天[1]。", False),
    ("<think>a</think>first <think>b</think>second", False, "ab", "first second", False),
    ("answer ends with a partial tag </thi", False, "", "answer ends with a partial tag </thi", False),
]


@pytest.mark.parametrize(("text", "prefilled", "reasoning", "answer", "unclosed"), CASES)
def test_split_full_string(text: str, prefilled: bool, reasoning: str, answer: str, unclosed: bool) -> None:
    got = split_reasoning(text, think_prefilled=prefilled)
    assert (got.reasoning, got.answer, got.unclosed) == (reasoning, answer, unclosed)


def _stream(pieces: list[str], prefilled: bool) -> tuple[str, str, bool, str, str]:
    """Feed pieces; return the splitter's totals and the totals a delta-consuming client rebuilt."""
    splitter = ReasoningSplitter(think_prefilled=prefilled)
    reasoning, answer = "", ""
    parts = []
    for piece in pieces:
        parts.extend(splitter.feed(piece))
    parts.extend(splitter.close())
    for part in parts:
        assert part.text, "empty parts are never emitted"
        if part.moved:
            answer = ""
        if part.channel == "reasoning":
            reasoning += part.text
        else:
            answer += part.text
    return splitter.reasoning, splitter.answer, splitter.unclosed, reasoning.strip(), answer.rstrip()


@pytest.mark.parametrize(("text", "prefilled", "reasoning", "answer", "unclosed"), CASES)
def test_stream_every_single_split_point(
    text: str, prefilled: bool, reasoning: str, answer: str, unclosed: bool
) -> None:
    for i in range(len(text) + 1):
        got = _stream([text[:i], text[i:]], prefilled)
        assert got == (reasoning, answer, unclosed, reasoning, answer), f"split at {i}"


@pytest.mark.parametrize(("text", "prefilled", "reasoning", "answer", "unclosed"), CASES)
def test_stream_char_by_char_and_random_chunks(
    text: str, prefilled: bool, reasoning: str, answer: str, unclosed: bool
) -> None:
    expected = (reasoning, answer, unclosed, reasoning, answer)
    assert _stream(list(text), prefilled) == expected
    rng = random.Random(len(text))
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(4, len(text) - 1)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _stream(pieces, prefilled) == expected, pieces


def test_stream_emits_answer_before_the_end() -> None:
    splitter = ReasoningSplitter()
    assert [(p.channel, p.text) for p in splitter.feed("<think>weighing")] == [("reasoning", "weighing")]
    assert splitter.in_reasoning
    parts = splitter.feed(" options</think>\n\nThe ans")
    assert [(p.channel, p.text) for p in parts] == [("reasoning", " options"), ("answer", "The ans")]
    # "</thi" could be the start of a tag: held back until the next delta decides.
    assert [(p.channel, p.text) for p in splitter.feed("wer is 4 <")] == [("answer", "wer is 4 ")]
    assert [(p.channel, p.text) for p in splitter.feed("5")] == [("answer", "<5")]


def test_stray_closing_tag_moves_emitted_answer_to_reasoning() -> None:
    splitter = ReasoningSplitter()
    first = splitter.feed("Okay, so the")
    assert [(p.channel, p.text) for p in first] == [("answer", "Okay, so the")]
    second = splitter.feed(" user wants X.</think>Answer.")
    assert [(p.channel, p.text, p.moved) for p in second] == [
        ("reasoning", "Okay, so the user wants X.", True),
        ("answer", "Answer.", False),
    ]
    assert (splitter.reasoning, splitter.answer) == ("Okay, so the user wants X.", "Answer.")


def test_feed_after_close_is_an_error() -> None:
    splitter = ReasoningSplitter()
    splitter.close()
    with pytest.raises(RuntimeError):
        splitter.feed("x")


def test_template_prefill_detection() -> None:
    assert template_prefills_think("<｜User｜>hi<｜Assistant｜><think>\n")
    assert not template_prefills_think("<|im_start|>assistant\n")
