"""Query log (auditor): who asked what and when, what was retrieved and answered; CSV; chain checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import streamlit as st

from app.services import auditing, session, users
from ui import common
from ui.safe_text import safe_label, safe_markdown

AUTO_VERIFY_S = 600  # verify on page view when the last check is older than this
KINDS = {"query": "questions", "": "all events", "admin": "admin and sign-in events", "feedback": "feedback"}
RATING = {"up": "Helpful", "down": "Not helpful"}


def chain_status(user: session.SessionUser) -> None:
    c = common.container()
    check = auditing.last_check(c)
    left, right = st.columns([4, 1])
    if right.button("Verify now", icon=":material/verified:", width="stretch") or (
            check is None or time.time() - check.at > AUTO_VERIFY_S):
        with common.user_errors("Verifying the log"), st.spinner("Verifying the hash chain…"):
            auditing.verify(c, user)
            check = auditing.last_check(c)
    if check is None:
        return
    at = datetime.fromtimestamp(check.at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    if check.ok:
        left.success(f"**Chain intact**: {check.checked} record(s) verified, up to #{check.last_seq}. "
                     f"Last check {at} ({check.seconds:.2f} s).", icon=":material/verified_user:")
    else:
        left.error(f"**Chain broken** at record #{check.first_bad_seq}: {safe_label(check.problem or '', 300)}. "
                   f"Last check {at}. The log may have been altered; keep a copy and escalate.",
                   icon=":material/gpp_bad:")


def filters(user: session.SessionUser) -> dict:
    c = common.container()
    a, b, d, e = st.columns([1, 1.3, 1.5, 1])
    user_names = ["", *[u.name for u in users.users(c, user)]]
    actor = a.selectbox("User", user_names, format_func=lambda u: u or "anyone")
    today = datetime.now().date()
    span = b.date_input("Time range", (today - timedelta(days=30), today), max_value=today)
    contains = d.text_input("Text in question or answer", placeholder="e.g. trustee")
    kind = e.selectbox("Show", list(KINDS), format_func=KINDS.get)
    since = until = None
    if isinstance(span, tuple | list) and span:
        since = datetime.combine(span[0], dtime.min).astimezone(UTC)
        until = datetime.combine(span[-1], dtime.max).astimezone(UTC)
    return {"actor": actor or None, "since": since, "until": until, "contains": contains.strip() or None,
            "kind": kind or None}


def summary(r: auditing.AuditView) -> str:
    """The question column: the question, or what a feedback record rated, or the target."""
    if r.question:
        return r.question
    if r.kind == "feedback":
        return f"{RATING.get((r.details or {}).get('rating'), '')} · answer #{r.target}"
    return r.target or ""


def detail(user: session.SessionUser, seq: int) -> None:
    c = common.container()
    v = auditing.get(c, user, seq)
    st.markdown(f"#### Record #{v.seq}")
    st.caption(safe_label(f"{common.fmt_time(v.created_at)} · {v.actor or '—'} ({v.actor_role or '—'}, "
                          f"{v.client or '—'}) · {v.action} · outcome {v.outcome}", 300))
    if v.question:
        st.markdown("**Question**")
        st.markdown(safe_markdown(v.question))
    if v.answer:
        st.markdown("**Answer**")
        st.markdown(safe_markdown(v.answer))
    if v.kind == "feedback":  # a rating of an earlier answer: which one, how, and the comment
        answer = (v.details or {}).get("answer_seq") or v.target
        st.markdown(safe_label(f"**{RATING.get((v.details or {}).get('rating'), '—')}** · on the answer of "
                               f"record #{answer}", 200))
        if v.comment:
            st.markdown("**Comment**")
            st.markdown(safe_markdown(v.comment))
    if v.reason:
        st.markdown("**Reason**")
        st.markdown(safe_markdown(v.reason))
    details = v.details or {}
    if details.get("timings") or details.get("model"):
        t = details.get("timings") or {}
        st.caption(safe_label(f"model {details.get('model') or '—'} · retrieval {t.get('retrieval_ms')} ms · "
                              f"first token {t.get('first_token_ms')} ms · total {t.get('total_ms')} ms · "
                              f"cited {details.get('citations') or []}", 300))
    passages = auditing.retrieved_passages(c, details)
    if passages:
        st.markdown("**Retrieved passages**")
        cited = set(details.get("cited_chunks") or [])
        for i, (meta, p) in enumerate(passages, 1):
            mark = " · cited" if meta.get("chunk_id") in cited else ""
            if p is None:
                st.caption(f"[{i}] chunk {meta.get('chunk_id')} (deleted since){mark}")
                continue
            where = f" · {p.position}" if p.position else ""
            with st.expander(safe_label(f"[{i}] {p.source}{where} · score {meta.get('score')}{mark}")):
                st.markdown(safe_markdown(p.text))
    with st.expander("Raw record"):
        st.json({key: val for key, val in details.items() if key != "retrieved"} | {"hash": v.hash}, expanded=False)


user = common.require(session.QUERY_LOG)
st.title("Query log")
chain_status(user)
f = filters(user)
with common.user_errors("Reading the log"):
    rows = auditing.query(common.container(), user, limit=500, **f)
    if not rows:
        st.info("No records match these filters.")
        st.stop()
    st.dataframe([{"#": r.seq, "time": common.fmt_time(r.created_at), "user": r.actor or "", "role": r.actor_role or "",
                   "event": r.action, "outcome": r.outcome, "question": summary(r)[:200]}
                  for r in rows], hide_index=True, width="stretch", height=min(420, 38 + 35 * len(rows)))
    if st.button("Prepare CSV export", icon=":material/table_view:", help="All records matching the filters."):
        data, n = auditing.export_csv(common.container(), user, **f)
        st.download_button(f"Download {n} record(s) as CSV", data, "kb-query-log.csv", "text/csv",
                           icon=":material/download:")
    labels = {r.seq: f"#{r.seq} · {common.fmt_time(r.created_at)} · {r.actor or '—'} · "
                     f"{' '.join((r.question or r.action).split())[:80]}" for r in rows}
    seq = st.selectbox("Open a record", list(labels), format_func=labels.get)
    if seq is not None:
        detail(user, seq)
