"""`kb eval answers`: the scoring rules, the refusal wording, and a real run over a tiny SQuAD-format set
with the small model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from app.services import evaluation, qa
from app.settings import RetrievalSettings
from llm.prompt import SYSTEM_EN, SYSTEM_ZH

PARAGRAPHS = [
    ("Lighthouses of Norland",
     "The Varde lighthouse was built in 1872 on the island of Skarvø. Its lamp burned whale oil until 1921, "
     "when it was converted to electric light. The tower is 34 metres tall and painted red and white."),
    ("Norland cheese",
     "Brunost from the Holm valley is made from goat whey that is boiled for nine hours until it turns brown. "
     "The Holm dairy cooperative, founded in 1903, sells most of it in the capital. Orders go to "
     "sales@holm-dairy.no."),
]
QUESTIONS = [  # (paragraph, question, answers or None when unanswerable)
    (0, "In what year was the Varde lighthouse built?", ["1872"]),
    (0, "How tall is the Varde lighthouse tower?", ["34 metres", "34"]),
    (1, "How many hours is the goat whey for brunost boiled?", ["nine hours", "nine"]),
    (1, "Who was the first director of the Holm dairy cooperative?", None),
    (0, "What colour was the Varde lamp's original glass?", None),
    (1, "To which e-mail address do orders for Holm brunost go?", ["sales@holm-dairy.no"]),  # scrubbed
]


def write_set(path):
    data = [{"title": t, "paragraphs": [{"context": ctx, "qas": []}]} for t, ctx in PARAGRAPHS]
    for i, (p, q, answers) in enumerate(QUESTIONS):
        text = PARAGRAPHS[p][1]
        gold = answers or []
        data[p]["paragraphs"][0]["qas"].append({
            "id": f"q{i}", "question": q, "is_impossible": answers is None,
            "answers": [{"text": a, "answer_start": text.index(a)} for a in gold]})
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


# --- scoring rules ---------------------------------------------------------------------------------------

def test_answers_compare_normalised_and_whole_words():
    assert evaluation.contains_answer("It was built in 1872 [1].", ["1872"], "en")
    assert evaluation.contains_answer("Denmark, Iceland, and Norway [2]", ["Denmark, Iceland and Norway"], "en")
    assert evaluation.contains_answer("THE  10TH\ncentury", ["10th century"], "en")
    assert not evaluation.contains_answer("about 100 years", ["10"], "en")  # whole words
    assert not evaluation.contains_answer("see [1]", ["1"], "en")  # citation markers are not answers
    assert not evaluation.contains_answer("see [1, 2] and 【3】", ["2"], "en")  # nor the model's other forms
    assert evaluation.contains_answer("in 1918[2] and 1919", ["1918 and 1919"], "en")
    # articles do not count, as in SQuAD's own script; the words still must be there
    assert evaluation.contains_answer("It is greater Southern California Megaregion.",
                                      ["the greater Southern California Megaregion"], "en")
    assert not evaluation.contains_answer("central business district", ["Central business districts"], "en")
    assert evaluation.contains_answer("由光荣 和 ω-force 开发[1]。", ["光荣和ω-force"], "zh")
    assert evaluation.contains_answer("主打「战史演武」与「争霸演武」", ["战史演武"], "zh")


def test_declines_are_detected_in_both_languages_and_the_prompt_uses_the_phrase():
    assert qa.NOT_IN_SOURCES["en"] in SYSTEM_EN and qa.NOT_IN_SOURCES["zh"] in SYSTEM_ZH
    for text in [*qa.NOT_IN_SOURCES.values(), *qa.NO_BASIS.values(), "The sources don't mention his age.",
                 "The provided text does not specify the year [1].", "I don't know.", "资料中并没有提到这一点。"]:
        assert qa.declines(text), text
    for text in ["The lighthouse was built in 1872 [1].", "The documents show it was painted red [1].",
                 "由光荣和ω-force开发[1]。"]:
        assert not qa.declines(text), text


def test_repeated_sentences_count():
    assert evaluation.repeats_itself("The tower is red and white [1]. The tower is red and white [1].")
    assert evaluation.repeats_itself("short", finish_reason="repetition")
    assert not evaluation.repeats_itself("It was built in 1872 [1]. It is 34 metres tall [1].")


def test_sample_is_stratified_and_reproducible(tmp_path):
    items = [evaluation.QaItem(f"a{i}", "q", ["x"], True, "p0") for i in range(60)]
    items += [evaluation.QaItem(f"u{i}", "q", [], False, "p0") for i in range(40)]
    one = evaluation.sample_questions(items, 10, seed=3)
    assert [q.id for q in one] == [q.id for q in evaluation.sample_questions(items, 10, seed=3)]
    assert sum(q.answerable for q in one) == 6 and len({q.id for q in one}) == 10
    assert sum(not q.answerable for q in evaluation.sample_questions(items, 2, seed=0)) == 1
    loaded = evaluation.load_squad(write_set(tmp_path / "set.json"))
    assert len(loaded.paragraphs) == 2
    assert {q.id: q.answerable for q in loaded.items} == {"q0": True, "q1": True, "q2": True, "q3": False, "q4": False,
                                                         "q5": True}
    assert {q.id: q.paragraph for q in loaded.items}["q2"] == "p1"


def _passage(text, dense):
    return SimpleNamespace(text=text, dense_score=dense)


def test_refusal_reason_names_only_the_gates_that_applied():
    r = RetrievalSettings()
    kept, why = qa._relevant([_passage("cats and dogs", 0.05), _passage("the weather", 0.02)],
                             "What is the boiling point of liquid nitrogen?", r)
    assert not kept
    assert why == ("None of the 2 passages found is similar enough to the question (closest: 0.05; 0.25 needed) "
                   "or shares enough of its words (best: 0% of them; 50% needed).")
    _, why = qa._relevant([_passage("员工出差后须在十个工作日内提交报销申请。", 0.9)] * 3, "公司的年假有多少天？", r)
    assert why.startswith("None of the 3 passages found shares enough of the question's words (best: ")
    assert "similar" not in why  # the embedder does not read Chinese: its similarity is no gate there
    _, why = qa._relevant([], "anything?", r)
    assert why == "No passages were found in the collections you can read."


def test_a_question_that_passes_the_gate_gets_the_passages_about_it():
    """Either signal lets a question through; the model then sees the ranking, weak passages included, but not
    a filler about nothing in the question (another language, another topic)."""
    r = RetrievalSettings()  # MiniLM's similarity gate: 0.25
    question = "What is the boiling point of liquid nitrogen?"
    first = _passage("The boiling point of liquid nitrogen is minus 196 degrees.", 0.12)
    shares_a_word = _passage("Nitrogen makes up most of the air.", 0.05)
    similar = _passage("Cryogenic fluids are kept in insulated flasks.", 0.13)  # half the gate or more
    filler = _passage("员工出差后须在十个工作日内提交报销申请。", 0.01)
    kept, why = qa._relevant([first, filler, shares_a_word, similar], question, r)
    assert kept == [first, shares_a_word, similar] and why is None
    found = [_passage("unrelated words", 0.31), _passage("more", 0.02)]
    assert qa._relevant(found, question, r) == (found[:1], None)  # the first passage is always given


# --- the real thing, small ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_eval_answers_runs_end_to_end_with_the_small_model(tmp_path, smollm2):
    data = write_set(tmp_path / "tiny.json")
    env = {**os.environ, "KB_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run([sys.executable, "-m", "app", "eval", "answers", "--squad", str(data), "--n", "6",
                        "--model", str(smollm2.path), "--json"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["paragraphs"] == 2 and out["chunks"] >= 2 and out["set"] == "tiny.json"
    (label, m), = out["models"].items()
    assert m["questions"] == 6 and m["answerable"] == 4 and m["unanswerable"] == 2
    for key in ("accuracy", "false_refusals", "unanswerable_declined"):
        assert 0.0 <= m[key] <= 1.0, key
    # the e-mail address was scrubbed at ingestion; every other gold answer is in a passage retrieved
    assert m["gold_indexed"] == m["gold_retrieved"] == 0.75
    assert m["gold_read"] <= m["gold_retrieved"]  # and what the model read of them is a part
    assert m["citation_correct"] is None or 0.0 <= m["citation_correct"] <= 1.0
    assert isinstance(m["repeated"], int)
    assert m["sources_ms"]["p50"] > 0
    if m["first_token_s"]["p50"] is not None:  # something was generated
        assert m["first_token_s"]["p95"] >= m["first_token_s"]["p50"] > 0 and m["tokens_per_s"]["p50"] > 0
    rows = out["questions"][label]
    assert {q["id"] for q in rows} == {f"q{i}" for i in range(6)}
    for q in rows:
        assert q["declined"] == (q["refused_by_gate"] or q["declined_by_model"])
        assert not (q["correct"] and q["declined"])

    table = subprocess.run([sys.executable, "-m", "app", "eval", "answers", "--squad", str(data), "--n", "2",
                            "--model", str(smollm2.path)], env=env, capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr
    assert "accuracy" in table.stdout and "TTFT p50" in table.stdout and label[:28] in table.stdout
    assert "gold answer in the stored text (after PII scrubbing)" in table.stdout
    assert "answers" in table.stderr  # the progress bar goes to stderr
