"""Chat: ask questions of the collections you may read; streamed, cited answers."""

from __future__ import annotations

import time

import streamlit as st

from app.errors import KbError
from app.services import chat, qa, session
from ui import common
from ui import feedback as feedback_ui
from ui.chat_turns import (
    CHAT_KEY,
    PENDING_KEY,
    Turn,
    conversation,
    render_answer,
    render_searched,
    searched_for,
    turn_from,
)
from ui.safe_text import safe_label, safe_markdown

REFRESH_S = 0.08  # at most ~12 redraws a second while streaming


def ask_and_stream(user: session.SessionUser, question: str, collection_ids: set[int], earlier: list[Turn],
                   searched_slot=None) -> Turn:
    """Ask ``question`` as a follow-up of the ``earlier`` turns and stream the answer into the page;
    ``searched_slot`` (under the user's question) shows what a rewritten follow-up was searched as."""
    c = common.container()
    status, slot = st.empty(), st.empty()
    status.caption("Searching your documents…")
    answer, last = "", 0.0
    try:
        caller = qa.caller_for(c, user.name, "ui")
        for ev in qa.ask(c, caller, question, collections=collection_ids, history=conversation(earlier)):
            if ev.kind == "condensed":
                searched = searched_for(Turn(question, searched=ev.text))
                if searched and searched_slot is not None:
                    searched_slot.caption(safe_label(f"Searched for: {searched}", limit=400))
            elif ev.kind == "passages":
                status.caption("Writing the answer…")
            elif ev.kind == "reasoning":
                if ev.moved:  # what was shown as answer was reasoning after all
                    answer = ""
                status.caption("Thinking…")
            elif ev.kind == "answer":
                answer += ev.text
                if time.monotonic() - last > REFRESH_S:
                    slot.markdown(safe_markdown(answer) + " ▌")
                    last = time.monotonic()
            elif ev.kind == "done" and ev.result is not None:
                status.empty()
                slot.empty()
                return turn_from(ev.result)
    except KbError as exc:
        turn = Turn(question, error=str(exc))
    except Exception:
        common.log.exception("answering failed")
        turn = Turn(question, error="The answer could not be produced because of an internal error. "
                                    "The server log has the details.")
    else:
        turn = Turn(question, error="The answer ended unexpectedly; please ask again.")
    status.empty()
    slot.empty()
    return turn


def sidebar(user: session.SessionUser, collections: list[tuple[int, str]]) -> set[int]:
    with st.sidebar:
        names = {name: cid for cid, name in collections}
        picked = st.multiselect("Search in", list(names), default=list(names), key="chat_collections",
                                help="Only collections you have been granted are listed.")
        if st.button("New conversation", icon=":material/add_comment:", width="stretch",
                     help="Start over: earlier questions are no longer taken into account."):
            st.session_state[CHAT_KEY] = []
            st.session_state.pop(PENDING_KEY, None)
        st.markdown("**Your recent questions**")
        try:
            history = chat.past_questions(common.container(), user.name, limit=15)
        except Exception:
            common.log.exception("could not read question history")
            history = []
        if not history:
            st.caption("Questions you ask appear here.")
        for item in history:
            if st.button(safe_label(item.question, 60), key=f"hist_{item.seq}", help=common.fmt_time(item.created_at),
                         width="stretch", type="tertiary"):
                st.session_state[PENDING_KEY] = item.question
    return {names[n] for n in picked}


user = common.require(session.CHAT)
st.title("Ask the documents")
collections = chat.readable_collections(common.container(), user.name)
selected = sidebar(user, collections)
turns: list[Turn] = st.session_state.setdefault(CHAT_KEY, [])

if not collections:
    st.info("You have no access to any collection yet. Ask an administrator to grant you one.")
elif not turns:
    st.caption("Answers come only from the documents in the collections you can read, with numbered sources. "
               "When the documents do not cover a question, kb says so instead of guessing.")

feedback_ui.known_ratings(user, [turn.audit_seq for turn in turns if turn.audit_seq])
for turn in turns:
    with st.chat_message("user"):
        st.markdown(safe_markdown(turn.question))
        render_searched(turn)
    with st.chat_message("assistant"):
        render_answer(turn)
        feedback_ui.render(user, turn.audit_seq)

typed = st.chat_input("Ask a question about your documents", disabled=not collections, max_chars=qa.MAX_QUESTION_CHARS)
question = typed or st.session_state.pop(PENDING_KEY, None)
if question and collections:
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
        searched_slot = st.empty()
    with st.chat_message("assistant"):
        if not selected:
            turn = Turn(question, error="Pick at least one collection to search in (left).")
        else:
            turn = ask_and_stream(user, question, selected, turns, searched_slot)
        render_answer(turn)
        feedback_ui.render(user, turn.audit_seq)
    turns.append(turn)
