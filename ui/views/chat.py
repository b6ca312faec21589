"""Chat: ask questions of the collections you may read; streamed, cited answers."""

from __future__ import annotations

import time

import streamlit as st

from app.errors import KbError
from app.services import chat, qa, session, web_sessions
from ui import common, i18n
from ui import feedback as feedback_ui
from ui.chat_turns import (
    CHAT_KEY,
    PENDING_KEY,
    Turn,
    conversation,
    export_markdown,
    from_dicts,
    render_answer,
    render_found,
    render_searched,
    searched_for,
    to_dicts,
    turn_from,
)
from ui.i18n import t
from ui.safe_text import safe_label, safe_markdown

REFRESH_S = 0.08  # at most ~12 redraws a second while streaming


def ask_and_stream(user: session.SessionUser, question: str, collection_ids: set[int], earlier: list[Turn],
                   searched_slot=None) -> Turn:
    """Ask ``question`` as a follow-up of the ``earlier`` turns and stream the answer into the page;
    ``searched_slot`` (under the user's question) shows what a rewritten follow-up was searched as."""
    c = common.container()
    status, slot, found = st.empty(), st.empty(), st.empty()
    status.caption(t("chat.searching"))
    answer, last = "", 0.0
    try:
        caller = qa.caller_for(c, user.name, "ui")
        for ev in qa.ask(c, caller, question, collections=collection_ids, history=conversation(earlier)):
            if ev.kind == "condensed":
                searched = searched_for(Turn(question, searched=ev.text))
                if searched and searched_slot is not None:
                    searched_slot.caption(safe_label(t("chat.searched_for", text=searched), limit=400))
            elif ev.kind == "passages":
                status.caption(t("chat.writing"))
                if ev.result is not None:
                    with found.container():
                        render_found(ev.result)
            elif ev.kind == "reasoning":
                if ev.moved:  # what was shown as answer was reasoning after all
                    answer = ""
                status.caption(t("chat.thinking"))
            elif ev.kind == "answer":
                answer += ev.text
                if time.monotonic() - last > REFRESH_S:
                    slot.markdown(safe_markdown(answer) + " ▌")
                    last = time.monotonic()
            elif ev.kind == "done" and ev.result is not None:
                status.empty()
                slot.empty()
                found.empty()
                return turn_from(ev.result)
    except KbError as exc:
        turn = Turn(question, error=str(exc))
    except Exception:
        common.log.exception("answering failed")
        turn = Turn(question, error=t("chat.internal"))
    else:
        turn = Turn(question, error=t("chat.ended"))
    status.empty()
    slot.empty()
    found.empty()
    return turn


def load_turns() -> list[Turn]:
    """This browser session's open conversation: kept server-side with the session, so a reload
    brings it back."""
    if CHAT_KEY not in st.session_state:
        try:
            st.session_state[CHAT_KEY] = from_dicts(web_sessions.load_conversation(common.container(),
                                                                                   common.session_token()))
        except Exception:
            common.log.exception("could not restore the conversation")
            st.session_state[CHAT_KEY] = []
    return st.session_state[CHAT_KEY]


def save_turns(turns: list[Turn]) -> None:
    try:
        web_sessions.save_conversation(common.container(), common.session_token(), to_dicts(turns))
    except Exception:  # the answer is on screen; only a reload would lose it
        common.log.exception("could not keep the conversation")


def sidebar(user: session.SessionUser, collections: list[tuple[int, str]], turns: list[Turn]) -> set[int]:
    with st.sidebar:
        names = {name: cid for cid, name in collections}
        picked = st.multiselect(t("chat.search_in"), list(names), default=list(names), key="chat_collections",
                                help=t("chat.search_in_help"))
        if st.button(t("chat.new"), icon=":material/add_comment:", width="stretch", help=t("chat.new_help")):
            turns.clear()
            st.session_state.pop(PENDING_KEY, None)
            save_turns(turns)
        if turns:
            st.download_button(t("chat.export"), export_markdown(turns, user.name), "kb-conversation.md",
                               "text/markdown", icon=":material/download:", width="stretch",
                               help=t("chat.export_help"), key="chat_export")
        st.markdown(f"**{t('chat.recent')}**")
        try:
            history = chat.past_questions(common.container(), user.name, limit=15)
        except Exception:
            common.log.exception("could not read question history")
            history = []
        if not history:
            st.caption(t("chat.recent_empty"))
        for item in history:
            if st.button(safe_label(item.question, 60), key=f"hist_{item.seq}", help=common.fmt_time(item.created_at),
                         width="stretch", type="tertiary"):
                st.session_state[PENDING_KEY] = item.question
    return {names[n] for n in picked}


def too_long(question: str) -> None:
    """Say why the question was not sent, and keep its text so nothing pasted is lost."""
    st.error(t("chat.too_long", n=i18n.fmt_int(len(question.strip())), limit=i18n.fmt_int(qa.MAX_QUESTION_CHARS)),
             icon=":material/error:")
    # no key: a keyed widget keeps the value it had first, and each too-long question must show its own text
    st.text_area(t("chat.too_long_text"), question, height=160)


user = common.require(session.CHAT)
st.title(t("chat.title"))
collections = chat.readable_collections(common.container(), user.name)
turns = load_turns()
selected = sidebar(user, collections, turns)

if not collections:
    st.info(t("chat.no_access"))
elif not turns:
    st.caption(t("chat.intro"))

feedback_ui.known_ratings(user, [turn.audit_seq for turn in turns if turn.audit_seq])
for turn in turns:
    with st.chat_message("user"):
        st.markdown(safe_markdown(turn.question))
        render_searched(turn)
    with st.chat_message("assistant"):
        render_answer(turn)
        feedback_ui.render(user, turn.audit_seq)

# No max_chars: the browser would cut a long paste silently; the length is checked here, with a message.
typed = st.chat_input(t("chat.placeholder"), disabled=not collections)
question = typed or st.session_state.pop(PENDING_KEY, None)
if question and collections and len(question.strip()) > qa.MAX_QUESTION_CHARS:
    too_long(question)
elif question and collections:
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
        searched_slot = st.empty()
    with st.chat_message("assistant"):
        if not selected:
            turn = Turn(question, error=t("chat.pick_collection"))
        else:
            turn = ask_and_stream(user, question, selected, turns, searched_slot)
        render_answer(turn)
        feedback_ui.render(user, turn.audit_seq)
    turns.append(turn)
    save_turns(turns)
