"""Chat page: conversation rendering, the 'no basis' notice, sources, and untrusted text kept inert."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from app.services import qa
from app.services.chat import best_sentence
from tests.ui.conftest import app, titles
from ui.chat_turns import CHAT_KEY, Source, Turn

EVIL = ("<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
        "![p](https://tracker.example/p.png)")
MD = MarkdownIt("commonmark", {"html": True})


def live_html(md: str) -> list[str]:
    html = MD.render(md)
    return [t for t in re.findall(r"<[a-zA-Z][^>]*>", html)
            if not re.fullmatch(r"<(p|strong|em|ul|ol|li|br ?/?|code|pre|hr ?/?|blockquote|h\d)>", t)]


def evil_turns() -> list[Turn]:
    src = Source(1, "notes/evil.txt", "Evil <b>title</b> [x](javascript:t)", "handbook", "page 2",
                 f"Parking permits are renewed every March. {EVIL}", cited=True)
    answered = Turn("When are permits renewed? <script>q()</script>",
                    "Permits are renewed every March [1]. <script>steal()</script> [more](javascript:go())",
                    reasoning=f"thinking {EVIL}",
                    sources=[src], timings={"total_ms": 1234.0, "tokens_per_s": 20.5})
    refused = Turn("What is the CEO's salary?", qa.NO_BASIS["en"], refused=True,
                   refusal_reason="best passage similarity 0.05 is below 0.25")
    return [answered, refused]


def test_conversation_renders_untrusted_text_inert_with_openable_sources(kb):
    at = app(user="sam")
    at.session_state[CHAT_KEY] = evil_turns()
    at.run()
    assert not at.exception
    assert titles(at) == ["Ask the documents"]
    assert len(at.chat_message) == 4
    for md in at.markdown:
        assert live_html(md.value) == [], md.value
    labels = [e.label for e in at.expander]
    assert "Reasoning" in labels
    source_label = next(label for label in labels if label.startswith("\\[1\\]"))
    assert live_html(source_label) == [] and "javascript\u2060:" in source_label
    # the cited passage: the sentence shared with the answer is highlighted, the rest escaped
    passage = next(md.value for md in at.markdown if ":orange-background[" in md.value)
    assert ":orange-background[Parking permits are renewed every March.]" in passage
    assert "&lt;script&gt;" in passage
    assert "Sources — open one to see the passage" in [c.value for c in at.caption]


def test_no_basis_is_shown_as_such(kb):
    at = app(user="sam")
    at.session_state[CHAT_KEY] = evil_turns()[1:]
    at.run()
    assert [w.value for w in at.warning] == [qa.NO_BASIS["en"]]
    assert any("No basis to answer" in c.value for c in at.caption)
    assert not at.expander  # no sources, no reasoning


def test_an_answer_that_repeats_a_scrubbed_name_says_what_the_placeholder_is(kb):
    assert qa.scrubbed_in("It was <PERSON> of <ADDRESS>, then <PERSON> [1].") == ["PERSON", "ADDRESS"]
    assert qa.scrubbed_in("No placeholder <b>here</b> or <person>.") == []
    at = app(user="sam")
    at.session_state[CHAT_KEY] = [Turn("Who designed the church?", "The church was designed by <PERSON> [1].")]
    at.run()
    note = next(c.value for c in at.caption if "personal data removed" in c.value)
    assert live_html(note) == [] and "PERSON" in note
    at.session_state[CHAT_KEY] = [Turn("When?", "In 1872 [1].")]
    at.run()
    assert not any("personal data removed" in c.value for c in at.caption)


def test_collection_picker_lists_only_granted_collections(kb):
    from app import accounts

    with kb.sessions.begin() as s:
        accounts.add_collection(s, "board-minutes")  # no grant for staff
    at = app(user="sam").run()
    assert at.multiselect[0].options == ["handbook"]
    assert at.multiselect[0].value == ["handbook"]
    at_admin = app(user="admin").run()  # the first admin lands on My account (change the password)
    at_admin.switch_page("views/chat.py").run()
    assert at_admin.multiselect[0].options == ["board-minutes", "handbook"]


def test_user_without_collections_is_told_and_cannot_ask(kb):
    from app.services import users
    from tests.ui.conftest import session_user

    users.revoke(kb, session_user("admin"), "handbook", role="staff")
    at = app(user="sam").run()
    assert "no access to any collection" in at.info[0].value
    assert at.chat_input[0].disabled


def test_best_sentence_prefers_the_words_of_the_answer():
    text = "Visitors park in the north lot. Permits are renewed every March at the desk. Other text."
    start, end = best_sentence(text, "They are renewed in March.")
    assert text[start:end] == "Permits are renewed every March at the desk."
    assert best_sentence(text, "") is None


@pytest.mark.slow
def test_asking_streams_a_real_answer_with_sources(kb, smollm2, monkeypatch):
    """The whole path in AppTest: real embedder, index and SmolLM2; history lists the question after."""
    from ingest.submit import submit_bytes
    from ingest.worker import Worker

    monkeypatch.setenv("KB_LLM__MODEL_PATH", str(smollm2.path))
    monkeypatch.setenv("KB_PII__ENABLED", "false")
    monkeypatch.setenv("KB_LLM__MAX_TOKENS", "96")
    from ui import common

    c = common.container()  # the same Container the page will use (same settings)
    with c.sessions() as s:
        from app.accounts import get_collection

        col = get_collection(s, "handbook").id
    note = (b"Facilities note. Parking permits are renewed every March at the facilities desk. "
            b"Visitors park in the north lot. <script>alert(1)</script>")
    assert submit_bytes(c, col, "parking.txt", note, "admin").outcome == "queued"
    assert Worker(c).run_once() == 1

    at = app(user="sam").run()
    at.chat_input[0].set_value("When are parking permits renewed?").run(timeout=180)
    assert not at.exception, at.exception
    assert len(at.chat_message) == 2
    assert not at.error, [e.value for e in at.error]
    labels = [e.label for e in at.expander]
    assert any("parking.txt" in label for label in labels), labels
    for md in at.markdown:
        assert live_html(md.value) == [], md.value
    at.run()
    assert "When are parking permits renewed?" in [b.label for b in at.button]  # the history


def _fake_ask(calls: list):
    """qa.ask stand-in: records the history it was given and rewrites follow-ups like the real one."""

    def ask(container, caller, question, k=None, collections=None, history=None):
        calls.append(list(history or []))
        searched = f"What does the travel policy say about {question}" if history else question
        res = qa.AskResult(question=question, answer=f"Answer to {question} [1]",
                           condensed=searched if history else None)
        if history:
            yield qa.Event("condensed", searched)
        yield qa.Event("passages")
        yield qa.Event("answer", res.answer)
        yield qa.Event("done", result=res)

    return ask


def test_follow_ups_carry_the_conversation_and_show_what_was_searched(kb, monkeypatch):
    calls: list = []
    monkeypatch.setattr(qa, "ask", _fake_ask(calls))
    at = app(user="sam").run()
    at.chat_input[0].set_value("How are hotels reimbursed?").run()
    assert not at.exception, at.exception
    at.chat_input[0].set_value("and the deadline?").run()
    assert not at.exception, at.exception
    assert calls[0] == []
    assert calls[1] == [{"role": "user", "content": "How are hotels reimbursed?"},
                        {"role": "assistant", "content": "Answer to How are hotels reimbursed? [1]"}]
    searched = [c.value for c in at.caption if c.value.startswith("Searched for")]
    assert searched == ["Searched for: What does the travel policy say about and the deadline?"]
    at.run()  # drawn again from the stored turns: still under the question, once
    assert [c.value for c in at.caption if c.value.startswith("Searched for")] == searched
    assert len(at.chat_message) == 4

    next(b for b in at.button if b.label == "New conversation").click().run()
    assert not at.exception, at.exception
    assert len(at.chat_message) == 0 and at.session_state[CHAT_KEY] == []
    at.chat_input[0].set_value("and the deadline?").run()
    assert calls[2] == []  # a fresh conversation: nothing carried over
    assert not [c.value for c in at.caption if c.value.startswith("Searched for")]


def test_failed_turns_are_left_out_of_the_history():
    from ui.chat_turns import conversation

    turns = [Turn("q1", "a1"), Turn("q2", error="boom"), Turn("q3", qa.NO_BASIS["en"], refused=True)]
    assert conversation(turns) == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                                   {"role": "user", "content": "q3"},
                                   {"role": "assistant", "content": qa.NO_BASIS["en"]}]
