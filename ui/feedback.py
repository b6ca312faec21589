"""Under each answer: "Helpful" / "Not helpful" and an optional comment, recorded by app.services.feedback
as an audit record of kind feedback tied to the answer's record."""

from __future__ import annotations

import streamlit as st

from app.services import feedback, session
from ui import common, i18n
from ui.i18n import t

i18n.register({
    "feedback.helpful": {"en": "Helpful", "zh": "有帮助"},
    "feedback.not_helpful": {"en": "Not helpful", "zh": "没有帮助"},
    "feedback.thanks_up": {"en": "Thanks: recorded as helpful.", "zh": "谢谢：已记录为有帮助。"},
    "feedback.thanks_down": {"en": "Thanks: recorded as not helpful.", "zh": "谢谢：已记录为没有帮助。"},
    "feedback.comment": {"en": "Comment (optional)", "zh": "意见（可选）"},
    "feedback.comment_ph": {"en": "What was wrong or missing?", "zh": "哪里不对或缺了什么？"},
    "feedback.send": {"en": "Send comment", "zh": "提交意见"},
    "feedback.sent": {"en": "Comment recorded.", "zh": "意见已记录。"},
    "feedback.action": {"en": "Recording the feedback", "zh": "记录反馈"},
})
RATED_KEY = "kb_feedback"  # answer seq -> rating given in this browser session


def _rated() -> dict[int, str]:
    return st.session_state.setdefault(RATED_KEY, {})


def known_ratings(user: session.SessionUser, seqs: list[int]) -> None:
    """Load the user's earlier ratings of these answers once (a reload shows what they chose)."""
    rated = _rated()
    missing = [s for s in seqs if s is not None and s not in rated]
    if missing:
        try:
            rated.update(feedback.given(common.container(), user, missing))
        except Exception:
            common.log.exception("could not read earlier feedback")


@st.fragment
def render(user: session.SessionUser, answer_seq: int | None) -> None:
    """The rating buttons of one answer (a fragment: a click reruns only this, not the whole chat)."""
    if answer_seq is None:
        return
    rated = _rated()
    current = rated.get(answer_seq)
    left, right, _ = st.columns([1, 1, 5])
    clicked = None
    if left.button(t("feedback.helpful"), key=f"fb_up_{answer_seq}", type="primary" if current == "up" else
                   "secondary", width="stretch"):
        clicked = "up"
    if right.button(t("feedback.not_helpful"), key=f"fb_down_{answer_seq}",
                    type="primary" if current == "down" else "secondary", width="stretch"):
        clicked = "down"
    if clicked:
        with common.user_errors(t("feedback.action")):
            feedback.give(common.container(), user, answer_seq, clicked)
            rated[answer_seq] = current = clicked
    if current is None:
        return
    st.caption(t("feedback.thanks_up" if current == "up" else "feedback.thanks_down"))
    with st.form(f"fb_form_{answer_seq}", clear_on_submit=True, border=False):
        comment = st.text_input(t("feedback.comment"), placeholder=t("feedback.comment_ph"),
                                max_chars=feedback.MAX_COMMENT, key=f"fb_comment_{answer_seq}")
        if st.form_submit_button(t("feedback.send")) and comment.strip():
            with common.user_errors(t("feedback.action")):
                feedback.give(common.container(), user, answer_seq, current, comment)
                st.caption(t("feedback.sent"))
