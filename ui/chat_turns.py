"""A chat turn and how it is drawn: answer, reasoning, "no basis" notice, openable sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from app.services import chat, qa
from ui.safe_text import highlighted, safe_label, safe_markdown

CHAT_KEY = "kb_chat"  # this browser session's conversation: a list of Turn
PENDING_KEY = "kb_chat_pending"  # a question picked from the history, asked on this run


@dataclass
class Source:
    n: int
    source: str
    title: str
    collection: str
    position: str
    text: str
    cited: bool


@dataclass
class Turn:
    question: str
    answer: str = ""
    reasoning: str = ""
    refused: bool = False
    refusal_reason: str | None = None
    error: str | None = None
    sources: list[Source] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    searched: str | None = None  # the standalone question a follow-up was searched as
    audit_seq: int | None = None  # the answer's audit record: what feedback is tied to


def conversation(turns: list[Turn]) -> list[dict[str, str]]:
    """The conversation so far as OpenAI-style messages for qa.ask: each answered (or refused) turn's
    question and answer; turns that ended in an error are left out."""
    out: list[dict[str, str]] = []
    for t in turns:
        if t.error or not t.answer.strip():
            continue
        out += [{"role": "user", "content": t.question}, {"role": "assistant", "content": t.answer}]
    return out


def searched_for(turn: Turn) -> str | None:
    """What kb searched for, when that is not the question as asked (a rewritten follow-up)."""
    searched = " ".join(str(getattr(turn, "searched", None) or "").split())
    return searched if searched and searched != " ".join(turn.question.split()) else None


def render_searched(turn: Turn) -> None:
    """Under the user's question: what kb searched for when it rewrote a follow-up."""
    searched = searched_for(turn)
    if searched:
        st.caption(safe_label(f"Searched for: {searched}", limit=400))


def turn_from(result: qa.AskResult) -> Turn:
    cited = {c.n for c in result.citations}
    sources = [Source(i, p.source, p.title or p.source, p.collection, p.position, p.text, i in cited)
               for i, p in enumerate(result.passages, 1)]
    return Turn(result.question, result.answer, result.reasoning, result.refused, result.refusal_reason,
                sources=sources, timings=dict(result.timings), searched=result.condensed,
                audit_seq=result.audit_seq)


def render_source(src: Source, answer: str) -> None:
    where = f" · {src.position}" if src.position else ""
    with st.expander(safe_label(f"[{src.n}] {src.title}{where}"), expanded=False):
        st.caption(safe_label(f"Document: {src.source} · collection {src.collection}{where}", limit=400))
        st.markdown(highlighted(src.text, chat.best_sentence(src.text, answer)))


def render_answer(turn: Turn) -> None:
    if turn.error:
        st.error(turn.error)
        return
    if turn.refused:
        st.warning(safe_markdown(turn.answer), icon=":material/block:")
        if turn.refusal_reason:
            st.caption(safe_label(f"No basis to answer: {turn.refusal_reason}", limit=300))
        return
    if turn.reasoning.strip():
        with st.expander("Reasoning", icon=":material/psychology:", expanded=False):
            st.markdown(safe_markdown(turn.reasoning))
    st.markdown(safe_markdown(turn.answer) or "_(the model returned no answer)_")
    cited = [s for s in turn.sources if s.cited]
    if cited:
        st.caption("Sources — open one to see the passage")
        for src in cited:
            render_source(src, turn.answer)
    elif turn.sources:
        st.caption("The answer cites no passage. Passages consulted:")
        for src in turn.sources:
            render_source(src, turn.answer)
    t = turn.timings
    if t.get("total_ms"):
        st.caption(f"{t['total_ms'] / 1000:.1f} s" + (f" · {t['tokens_per_s']} tokens/s" if t.get("tokens_per_s")
                                                        else ""))
