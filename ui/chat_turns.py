"""A chat turn and how it is drawn: answer, reasoning, "no basis" notice, openable sources."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import streamlit as st

from app.services import chat, qa
from ui.i18n import fmt_datetime, fmt_int, fmt_num, register, t
from ui.safe_text import highlighted, safe_label, safe_markdown

CHAT_KEY = "kb_chat"  # this browser session's conversation: a list of Turn
PENDING_KEY = "kb_chat_pending"  # a question picked from the history, asked on this run

register({
    "chat.also_retrieved": {"en": "Also retrieved (not cited in the answer):",
                            "zh": "其他检索到的段落（回答未引用）："},
    "chat.found": {"en": "{n} passages found — the answer is being written from them:",
                   "zh": "找到 {n} 个段落，正在据此生成回答："},
})


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
    for turn in turns:
        if turn.error or not turn.answer.strip():
            continue
        out += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]
    return out


def searched_for(turn: Turn) -> str | None:
    """What kb searched for, when that is not the question as asked (a rewritten follow-up)."""
    searched = " ".join(str(getattr(turn, "searched", None) or "").split())
    return searched if searched and searched != " ".join(turn.question.split()) else None


def render_searched(turn: Turn) -> None:
    """Under the user's question: what kb searched for when it rewrote a follow-up."""
    searched = searched_for(turn)
    if searched:
        st.caption(safe_label(t("chat.searched_for", text=searched), limit=400))


def to_dicts(turns: list[Turn]) -> list[dict[str, Any]]:
    """The turns as plain JSON-able dicts, kept server-side with the browser session."""
    return [asdict(turn) for turn in turns]


def from_dicts(items: list[dict[str, Any]]) -> list[Turn]:
    """Turns back from ``to_dicts``; unknown keys (an older or newer layout) are ignored."""
    known, source_keys = {f.name for f in fields(Turn)}, {f.name for f in fields(Source)}
    out: list[Turn] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            continue
        data = {k: v for k, v in item.items() if k in known}
        data["sources"] = [Source(**{k: v for k, v in src.items() if k in source_keys})
                           for src in item.get("sources") or [] if isinstance(src, dict) and source_keys <= set(src)]
        out.append(Turn(**data))
    return out


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in (text or "").strip().splitlines())


def export_markdown(turns: list[Turn], user: str, lang: str | None = None, now: datetime | None = None) -> str:
    """The conversation as a Markdown file: each question, its answer, and the cited sources (document,
    collection, position and the passage), numbered as in the answer."""
    when = fmt_datetime(now or datetime.now().astimezone(), lang)
    out = [f"# {t('export.title', lang)}", "", t("export.meta", lang, user=user, when=when), ""]
    for i, turn in enumerate(turns, 1):
        out += [f"## {i}. {t('export.question', lang)}", "", turn.question.strip(), ""]
        if turn.error:
            out += [t("export.not_answered", lang, reason=turn.error), ""]
            continue
        searched = searched_for(turn)
        if searched:
            out += [f"_{t('chat.searched_for', lang, text=searched)}_", ""]
        out += [f"### {t('export.answer', lang)}", "", (turn.answer or "").strip(), ""]
        if turn.refused and turn.refusal_reason:
            out += [f"_{t('chat.no_basis', lang, reason=turn.refusal_reason)}_", ""]
        cited = [s for s in turn.sources if s.cited]
        if cited:
            out += [f"### {t('export.sources', lang)}", ""]
            for src in cited:
                where = f" · {src.position}" if src.position else ""
                out += [f"[{src.n}] **{src.title}** — {src.source} · {t('export.collection', lang)} "
                        f"{src.collection}{where}", "", _quote(src.text), ""]
    return "\n".join(out).rstrip() + "\n"


def sources_of(result: qa.AskResult) -> list[Source]:
    """Every passage the answer was written from, numbered as in the prompt, cited ones marked."""
    cited = {c.n for c in result.citations}
    return [Source(i, p.source, p.title or p.source, p.collection, p.position, p.text, i in cited)
            for i, p in enumerate(result.passages, 1)]


def turn_from(result: qa.AskResult) -> Turn:
    return Turn(result.question, result.answer, result.reasoning, result.refused, result.refusal_reason,
                sources=sources_of(result), timings=dict(result.timings), searched=result.condensed,
                audit_seq=result.audit_seq)


def render_found(result: qa.AskResult) -> None:
    """While the answer is written: the passages found, at once, so the reader can start on them."""
    sources = sources_of(result)
    if sources:
        st.caption(t("chat.found", n=fmt_int(len(sources))))
        for src in sources:
            render_source(src, "")


def render_source(src: Source, answer: str) -> None:
    where = f" · {src.position}" if src.position else ""
    with st.expander(safe_label(f"[{src.n}] {src.title}{where}"), expanded=False):
        st.caption(safe_label(t("chat.source_caption", source=src.source, collection=src.collection, where=where),
                              limit=400))
        st.markdown(highlighted(src.text, chat.best_sentence(src.text, answer)))


def render_answer(turn: Turn) -> None:
    if turn.error:
        st.error(turn.error)
        return
    if turn.refused:
        st.warning(safe_markdown(turn.answer), icon=":material/block:")
        if turn.refusal_reason:
            st.caption(safe_label(t("chat.no_basis", reason=turn.refusal_reason), limit=300))
        return
    if turn.reasoning.strip():
        with st.expander(t("chat.reasoning"), icon=":material/psychology:", expanded=False):
            st.markdown(safe_markdown(turn.reasoning))
    st.markdown(safe_markdown(turn.answer) or t("chat.no_answer"))
    scrubbed = qa.scrubbed_in(turn.answer)
    if scrubbed:
        st.caption(safe_label(t("chat.scrubbed", marks=", ".join(f"<{k}>" for k in scrubbed)), limit=400))
    cited = [s for s in turn.sources if s.cited]
    others = [s for s in turn.sources if not s.cited]  # retrieved and shown to the model, not cited
    if cited:
        st.caption(t("chat.sources"))
        for src in cited:
            render_source(src, turn.answer)
    if others:
        st.caption(t("chat.also_retrieved") if cited else t("chat.uncited"))
        for src in others:
            render_source(src, turn.answer)
    timings = turn.timings
    if timings.get("total_ms"):
        seconds = fmt_num(timings["total_ms"] / 1000)
        rate = timings.get("tokens_per_s")
        st.caption(t("chat.timing_rate", seconds=seconds, rate=rate) if rate else t("chat.timing", seconds=seconds))
