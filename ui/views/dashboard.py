"""Dashboard (admin): documents by status, the queue and its throughput, answer latency, refusals and
feedback over time, from the numbers /metrics exposes (app.services.monitoring)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.services import monitoring, session
from ui import common, i18n
from ui.i18n import t

i18n.register({
    "dash.title": {"en": "Dashboard", "zh": "仪表盘"},
    "dash.period": {"en": "Period", "zh": "时间范围"},
    "dash.days": {"en": "last {n} day(s)", "zh": "最近 {n} 天"},
    "dash.action": {"en": "Reading the figures", "zh": "读取统计数据"},
    "dash.now": {"en": "Now", "zh": "当前"},
    "dash.documents": {"en": "Documents by status", "zh": "各状态文档数"},
    "dash.no_documents": {"en": "No documents yet.", "zh": "还没有文档。"},
    "dash.waiting": {"en": "Waiting in the queue", "zh": "排队中"},
    "dash.running": {"en": "Being processed", "zh": "处理中"},
    "dash.oldest": {"en": "Oldest waiting", "zh": "最早排队"},
    "dash.chunks": {"en": "Chunks", "zh": "段落数"},
    "dash.queue": {"en": "Queue depth and throughput", "zh": "队列深度与处理量"},
    "dash.s.waiting": {"en": "waiting", "zh": "排队中"},
    "dash.s.uploaded": {"en": "uploaded", "zh": "已上传"},
    "dash.s.processed": {"en": "processed", "zh": "已处理"},
    "dash.answers": {"en": "Questions", "zh": "提问"},
    "dash.s.answered": {"en": "answered", "zh": "已回答"},
    "dash.s.refused": {"en": "refused (no basis)", "zh": "拒答（无依据）"},
    "dash.s.errors": {"en": "errors", "zh": "出错"},
    "dash.latency": {"en": "Answer time (ms)", "zh": "回答耗时（毫秒）"},
    "dash.s.p50": {"en": "p50", "zh": "中位数 p50"},
    "dash.s.p95": {"en": "p95", "zh": "p95"},
    "dash.s.ft50": {"en": "first token p50", "zh": "首字 p50"},
    "dash.feedback": {"en": "Feedback", "zh": "反馈"},
    "dash.s.helpful": {"en": "helpful", "zh": "有帮助"},
    "dash.s.not_helpful": {"en": "not helpful", "zh": "没有帮助"},
    "dash.p50": {"en": "Answer time p50", "zh": "回答耗时 p50"},
    "dash.p95": {"en": "Answer time p95", "zh": "回答耗时 p95"},
    "dash.refusal_rate": {"en": "Refused", "zh": "拒答率"},
    "dash.helpful_rate": {"en": "Rated helpful", "zh": "好评率"},
    "dash.source": {"en": "Queue figures come from the job queue; answer figures from each answer's record in the "
                          "query log (the timings /metrics observes). Read in {s} s.",
                    "zh": "队列数据来自任务队列；回答数据来自查询日志中每条回答的记录（即 /metrics 所统计的耗时）。"
                          "读取用时 {s} 秒。"},
})
PERIODS = (1, 7, 30, 90)


def _ms(x: float | None) -> str:
    return "—" if x is None else (f"{x / 1000:,.1f} s" if x >= 1000 else f"{x:,.0f} ms")


def _pct(part: float, whole: float) -> str:
    return "—" if not whole else f"{part / whole:.0%}"


def _frame(d: monitoring.Dashboard, series: dict[str, monitoring.Series], keys: dict[str, str]) -> pd.DataFrame:
    fmt = "%m-%d %H:00" if d.bucket == "hour" else "%Y-%m-%d"
    index = [s.astimezone().strftime(fmt) for s in d.starts]
    return pd.DataFrame({t(label): series[key].values for key, label in keys.items()}, index=index)


def now_row(d: monitoring.Dashboard) -> None:
    g = d.gauges
    st.subheader(t("dash.now"))
    cols = st.columns(4)
    cols[0].metric(t("dash.waiting"), i18n.fmt_int(g.jobs.get("queued", 0)))
    cols[1].metric(t("dash.running"), i18n.fmt_int(g.jobs.get("running", 0)))
    cols[2].metric(t("dash.oldest"), _ms(g.oldest_queued_s * 1000) if g.oldest_queued_s else "—")
    cols[3].metric(t("dash.chunks"), i18n.fmt_int(g.chunks))
    tot = d.totals
    asked = (tot["answered"] or 0) + (tot["refused"] or 0)
    rated = (tot["helpful"] or 0) + (tot["not_helpful"] or 0)
    cols = st.columns(4)
    cols[0].metric(t("dash.p50"), _ms(tot["p50_ms"]))
    cols[1].metric(t("dash.p95"), _ms(tot["p95_ms"]))
    cols[2].metric(t("dash.refusal_rate"), _pct(tot["refused"] or 0, asked))
    cols[3].metric(t("dash.helpful_rate"), _pct(tot["helpful"] or 0, rated))


def charts(d: monitoring.Dashboard) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{t('dash.documents')}**")
        if d.gauges.documents:
            st.bar_chart(pd.DataFrame({t("dash.documents"): d.gauges.documents}), horizontal=True, height=220)
        else:
            st.caption(t("dash.no_documents"))
    with right:
        st.markdown(f"**{t('dash.queue')}**")
        st.line_chart(_frame(d, d.queue, {"depth": "dash.s.waiting", "uploaded": "dash.s.uploaded",
                                          "processed": "dash.s.processed"}), height=220)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{t('dash.answers')}**")
        st.bar_chart(_frame(d, d.answers, {"answered": "dash.s.answered", "refused": "dash.s.refused",
                                           "errors": "dash.s.errors"}), height=220)
    with right:
        st.markdown(f"**{t('dash.latency')}**")
        st.line_chart(_frame(d, d.answers, {"p50_ms": "dash.s.p50", "p95_ms": "dash.s.p95",
                                            "first_token_p50_ms": "dash.s.ft50"}), height=220)
    st.markdown(f"**{t('dash.feedback')}**")
    st.bar_chart(_frame(d, d.feedback, {"helpful": "dash.s.helpful", "not_helpful": "dash.s.not_helpful"}),
                 height=200)


user = common.require(session.DASHBOARD)
st.title(t("dash.title"))
days = st.segmented_control(t("dash.period"), PERIODS, default=7, key="dash_days",
                            format_func=lambda n: t("dash.days", n=n)) or 7
with common.user_errors(t("dash.action")):
    dash = monitoring.dashboard(common.container(), user, days=int(days))
    now_row(dash)
    charts(dash)
    st.caption(t("dash.source", s=f"{dash.taken_s:.2f}"))
