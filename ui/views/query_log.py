"""Query log (auditor): who asked what and when, what was retrieved and answered; CSV; chain checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import streamlit as st

from app.services import auditing, session, users
from ui import common, i18n
from ui.i18n import t
from ui.safe_text import safe_label, safe_markdown

i18n.register({
    "log.kind.query": {"en": "questions", "zh": "提问"},
    "log.kind.all": {"en": "all events", "zh": "全部事件"},
    "log.kind.admin": {"en": "admin and sign-in events", "zh": "管理与登录事件"},
    "log.kind.feedback": {"en": "feedback", "zh": "反馈"},
    "log.rating.up": {"en": "Helpful", "zh": "有帮助"},
    "log.rating.down": {"en": "Not helpful", "zh": "没有帮助"},
    "log.verify": {"en": "Verify now", "zh": "立即校验"},
    "log.verify_action": {"en": "Verifying the log", "zh": "校验日志"},
    "log.verifying": {"en": "Verifying the hash chain…", "zh": "正在校验哈希链…"},
    "log.intact": {"en": "**Chain intact**: {n} record(s) verified, up to #{last}. Last check {at} ({s} s).",
                   "zh": "**哈希链完整**：已校验 {n} 条记录，截至 #{last}。上次校验 {at}（{s} 秒）。"},
    "log.broken": {"en": "**Chain broken** at record #{seq}: {problem}. Last check {at}. The log may have been "
                         "altered; keep a copy and escalate.",
                   "zh": "**哈希链断裂**，位于记录 #{seq}：{problem}。上次校验 {at}。"
                         "日志可能被篡改，请保留副本并上报。"},
    "log.user": {"en": "User", "zh": "用户"},
    "log.anyone": {"en": "anyone", "zh": "所有人"},
    "log.range": {"en": "Time range", "zh": "时间范围"},
    "log.contains": {"en": "Text in question or answer", "zh": "问题或回答中的文字"},
    "log.contains_hint": {"en": "e.g. trustee", "zh": "例如：受托人"},
    "log.show": {"en": "Show", "zh": "显示"},
    "log.rated": {"en": "{rating} · answer #{seq}", "zh": "{rating} · 回答 #{seq}"},
    "log.record": {"en": "Record #{seq}", "zh": "记录 #{seq}"},
    "log.meta": {"en": "{when} · {actor} ({role}, {client}) · {action} · outcome {outcome}",
                 "zh": "{when} · {actor}（{role}，{client}）· {action} · 结果 {outcome}"},
    "log.question": {"en": "Question", "zh": "问题"},
    "log.answer": {"en": "Answer", "zh": "回答"},
    "log.on_answer": {"en": "**{rating}** · on the answer of record #{seq}",
                      "zh": "**{rating}** · 针对记录 #{seq} 的回答"},
    "log.comment": {"en": "Comment", "zh": "评论"},
    "log.reason": {"en": "Reason", "zh": "原因"},
    "log.timings": {"en": "model {model} · retrieval {r} ms · first token {f} ms · total {total} ms · cited {cited}",
                    "zh": "模型 {model} · 检索 {r} 毫秒 · 首个词元 {f} 毫秒 · 总计 {total} 毫秒 · 引用 {cited}"},
    "log.passages": {"en": "Retrieved passages", "zh": "检索到的段落"},
    "log.cited": {"en": " · cited", "zh": " · 已引用"},
    "log.deleted_chunk": {"en": "[{i}] chunk {chunk} (deleted since){mark}",
                          "zh": "[{i}] 段落 {chunk}（已删除）{mark}"},
    "log.score": {"en": "score", "zh": "得分"},
    "log.raw": {"en": "Raw record", "zh": "原始记录"},
    "log.read_action": {"en": "Reading the log", "zh": "读取日志"},
    "log.none": {"en": "No records match these filters.", "zh": "没有符合筛选条件的记录。"},
    "log.col.time": {"en": "time", "zh": "时间"},
    "log.col.user": {"en": "user", "zh": "用户"},
    "log.col.role": {"en": "role", "zh": "角色"},
    "log.col.event": {"en": "event", "zh": "事件"},
    "log.col.outcome": {"en": "outcome", "zh": "结果"},
    "log.col.question": {"en": "question", "zh": "问题"},
    "log.csv": {"en": "Prepare CSV export", "zh": "准备 CSV 导出"},
    "log.csv_help": {"en": "All records matching the filters.", "zh": "所有符合筛选条件的记录。"},
    "log.csv_download": {"en": "Download {n} record(s) as CSV", "zh": "下载 {n} 条记录（CSV）"},
    "log.open": {"en": "Open a record", "zh": "打开一条记录"},
})

AUTO_VERIFY_S = 600  # verify on page view when the last check is older than this
KINDS = {"query": "log.kind.query", "": "log.kind.all", "admin": "log.kind.admin", "feedback": "log.kind.feedback"}
RATING = {"up": "log.rating.up", "down": "log.rating.down"}
# Sign-in and session events name the account in their target; the question column stays empty for
# them (a mistyped password in the user-name field must not sit in an overview table either).
NO_TARGET_PREFIXES = ("login.", "session.")


def rating(value) -> str:
    return t(RATING[value]) if value in RATING else "—"


def chain_status(user: session.SessionUser) -> None:
    c = common.container()
    check = auditing.last_check(c)
    left, right = st.columns([4, 1])
    if right.button(t("log.verify"), icon=":material/verified:", width="stretch") or (
            check is None or time.time() - check.at > AUTO_VERIFY_S):
        with common.user_errors(t("log.verify_action")), st.spinner(t("log.verifying")):
            auditing.verify(c, user)
            check = auditing.last_check(c)
    if check is None:
        return
    at = common.fmt_time(check.at) + datetime.fromtimestamp(check.at).astimezone().strftime(" %Z")
    if check.ok:
        left.success(t("log.intact", n=i18n.fmt_int(check.checked), last=check.last_seq, at=at,
                       s=f"{check.seconds:.2f}"), icon=":material/verified_user:")
    else:
        left.error(t("log.broken", seq=check.first_bad_seq, problem=safe_label(check.problem or "", 300), at=at),
                   icon=":material/gpp_bad:")


def filters(user: session.SessionUser) -> dict:
    c = common.container()
    a, b, d, e = st.columns([1, 1.3, 1.5, 1])
    user_names = ["", *[u.name for u in users.users(c, user)]]
    actor = a.selectbox(t("log.user"), user_names, format_func=lambda u: u or t("log.anyone"))
    today = datetime.now().date()
    span = b.date_input(t("log.range"), (today - timedelta(days=30), today), max_value=today,
                        format="YYYY/MM/DD" if i18n.current() == "zh" else "YYYY-MM-DD")
    contains = d.text_input(t("log.contains"), placeholder=t("log.contains_hint"))
    kind = e.selectbox(t("log.show"), list(KINDS), format_func=lambda k: t(KINDS[k]))
    since = until = None
    if isinstance(span, tuple | list) and span:
        since = datetime.combine(span[0], dtime.min).astimezone(UTC)
        until = datetime.combine(span[-1], dtime.max).astimezone(UTC)
    return {"actor": actor or None, "since": since, "until": until, "contains": contains.strip() or None,
            "kind": kind or None}


def summary(r: auditing.AuditView) -> str:
    """The question column: the question, or what a feedback record rated, or the target (never the
    account name of a sign-in or session event)."""
    if r.question:
        return r.question
    if r.kind == "feedback":
        return t("log.rated", rating=rating((r.details or {}).get("rating")), seq=r.target)
    if (r.action or "").startswith(NO_TARGET_PREFIXES):
        return ""
    return r.target or ""


def detail(user: session.SessionUser, seq: int) -> None:
    c = common.container()
    v = auditing.get(c, user, seq)
    st.markdown(f"#### {t('log.record', seq=v.seq)}")
    st.caption(safe_label(t("log.meta", when=common.fmt_time(v.created_at), actor=v.actor or "—",
                            role=v.actor_role or "—", client=v.client or "—", action=v.action,
                            outcome=v.outcome), 300))
    if v.question:
        st.markdown(f"**{t('log.question')}**")
        st.markdown(safe_markdown(v.question))
    if v.answer:
        st.markdown(f"**{t('log.answer')}**")
        st.markdown(safe_markdown(v.answer))
    if v.kind == "feedback":  # a rating of an earlier answer: which one, how, and the comment
        answer = (v.details or {}).get("answer_seq") or v.target
        st.markdown(safe_label(t("log.on_answer", rating=rating((v.details or {}).get("rating")), seq=answer), 200))
        if v.comment:
            st.markdown(f"**{t('log.comment')}**")
            st.markdown(safe_markdown(v.comment))
    if v.reason:
        st.markdown(f"**{t('log.reason')}**")
        st.markdown(safe_markdown(v.reason))
    details = v.details or {}
    if details.get("timings") or details.get("model"):
        tm = details.get("timings") or {}
        st.caption(safe_label(t("log.timings", model=details.get("model") or "—", r=tm.get("retrieval_ms"),
                                f=tm.get("first_token_ms"), total=tm.get("total_ms"),
                                cited=details.get("citations") or []), 300))
    passages = auditing.retrieved_passages(c, details)
    if passages:
        st.markdown(f"**{t('log.passages')}**")
        cited = set(details.get("cited_chunks") or [])
        for i, (meta, p) in enumerate(passages, 1):
            mark = t("log.cited") if meta.get("chunk_id") in cited else ""
            if p is None:
                st.caption(t("log.deleted_chunk", i=i, chunk=meta.get("chunk_id"), mark=mark))
                continue
            where = f" · {p.position}" if p.position else ""
            with st.expander(safe_label(f"[{i}] {p.source}{where} · {t('log.score')} {meta.get('score')}{mark}")):
                st.markdown(safe_markdown(p.text))
    with st.expander(t("log.raw")):
        st.json({key: val for key, val in details.items() if key != "retrieved"} | {"hash": v.hash}, expanded=False)


user = common.require(session.QUERY_LOG)
st.title(t("log.title"))
chain_status(user)
f = filters(user)
with common.user_errors(t("log.read_action")):
    rows = auditing.query(common.container(), user, limit=500, **f)
    if not rows:
        st.info(t("log.none"))
        st.stop()
    st.dataframe([{"#": r.seq, "time": common.fmt_time(r.created_at), "user": r.actor or "", "role": r.actor_role or "",
                   "event": r.action, "outcome": r.outcome, "question": summary(r)[:200]}
                  for r in rows], hide_index=True, width="stretch", height=min(420, 38 + 35 * len(rows)),
                 column_config={k: t(f"log.col.{k}") for k in ("time", "user", "role", "event", "outcome", "question")})
    if st.button(t("log.csv"), icon=":material/table_view:", help=t("log.csv_help")):
        data, n = auditing.export_csv(common.container(), user, **f)
        st.download_button(t("log.csv_download", n=i18n.fmt_int(n)), data, "kb-query-log.csv", "text/csv",
                           icon=":material/download:")
    labels = {r.seq: f"#{r.seq} · {common.fmt_time(r.created_at)} · {r.actor or '—'} · "
                     f"{' '.join((r.question or r.action).split())[:80]}" for r in rows}
    seq = st.selectbox(t("log.open"), list(labels), format_func=labels.get)
    if seq is not None:
        detail(user, seq)
