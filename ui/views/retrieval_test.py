"""Retrieval test (admin): what a query retrieves and why: dense, BM25 and fused scores, and the gate."""

from __future__ import annotations

import streamlit as st

from app.services import documents, retrieval_test, session
from ui import common, i18n
from ui.i18n import t
from ui.safe_text import safe_label, safe_markdown

i18n.register({
    "rt.title": {"en": "Retrieval test", "zh": "检索测试"},
    "rt.intro": {"en": "See which passages a question would retrieve, in the order the answer would get them, with "
                       "each score and whether the relevance gate lets a question through on it. Nothing is "
                       "generated; the test is recorded in the query log.",
                 "zh": "查看一个问题会检索到哪些段落、以何种顺序交给回答，附各项得分，以及相关性门槛是否放行。"
                       "不生成回答；每次测试都会记入查询日志。"},
    "rt.query": {"en": "Query", "zh": "查询"},
    "rt.query_ph": {"en": "Type a question as a user would", "zh": "像用户那样输入一个问题"},
    "rt.collections": {"en": "Collections", "zh": "文档集"},
    "rt.collections_help": {"en": "Empty: every collection.", "zh": "留空表示全部文档集。"},
    "rt.k": {"en": "Passages", "zh": "段落数"},
    "rt.mode": {"en": "Mode", "zh": "检索方式"},
    "rt.mode_setting": {"en": "as configured ({mode})", "zh": "按配置（{mode}）"},
    "rt.run": {"en": "Test retrieval", "zh": "开始测试"},
    "rt.action": {"en": "The retrieval test", "zh": "检索测试"},
    "rt.none": {"en": "No passage found in these collections.", "zh": "这些文档集中没有找到段落。"},
    "rt.pass": {"en": "A question would be answered: at least one passage passes the relevance gate.",
                "zh": "问题会被回答：至少有一个段落通过相关性门槛。"},
    "rt.fail": {"en": "A question would be refused: {reason}", "zh": "问题会被拒答：{reason}"},
    "rt.settings": {"en": "{mode} · fusion {fusion} · dense weight α {alpha} · gate: similarity ≥ {min_score}"
                          "{sim_note} or word overlap ≥ {min_cov} · {ms} ms",
                    "zh": "{mode} · 融合方式 {fusion} · 向量权重 α {alpha} · 门槛：相似度 ≥ {min_score}"
                          "{sim_note} 或词重合 ≥ {min_cov} · {ms} 毫秒"},
    "rt.sim_off": {"en": " (not used for this query)", "zh": "（此查询不适用）"},
    "rt.col.rank": {"en": "#", "zh": "名次"},
    "rt.col.document": {"en": "Document", "zh": "文档"},
    "rt.col.position": {"en": "Position", "zh": "位置"},
    "rt.col.collection": {"en": "Collection", "zh": "文档集"},
    "rt.col.fused": {"en": "Fused", "zh": "融合分"},
    "rt.col.dense": {"en": "Dense", "zh": "向量分"},
    "rt.col.dense_rank": {"en": "Dense rank", "zh": "向量名次"},
    "rt.col.bm25": {"en": "BM25", "zh": "BM25 分"},
    "rt.col.bm25_rank": {"en": "BM25 rank", "zh": "BM25 名次"},
    "rt.col.coverage": {"en": "Word overlap", "zh": "词重合"},
    "rt.col.gate": {"en": "Gate", "zh": "门槛"},
    "rt.gate_pass": {"en": "passes", "zh": "通过"},
    "rt.gate_fail": {"en": "fails", "zh": "未通过"},
    "rt.passages": {"en": "Passages", "zh": "段落原文"},
    "rt.chunk": {"en": "chunk {id} · document #{doc}", "zh": "段落 {id} · 文档 #{doc}"},
})
RESULT_KEY = "kb_rt_result"
MODES = ("", "hybrid", "dense", "bm25")


def form(user: session.SessionUser) -> None:
    c = common.container()
    names = documents.collection_names(c, user)
    with st.form("retrieval_test"):
        query = st.text_input(t("rt.query"), placeholder=t("rt.query_ph"), key="rt_query")
        a, b, d = st.columns([3, 1, 1])
        picked = a.multiselect(t("rt.collections"), names, help=t("rt.collections_help"), key="rt_collections")
        k = b.number_input(t("rt.k"), 1, retrieval_test.MAX_K, 10, key="rt_k")
        mode = d.selectbox(t("rt.mode"), MODES, key="rt_mode",
                           format_func=lambda m: m or t("rt.mode_setting", mode=c.settings.retrieval.mode))
        go = st.form_submit_button(t("rt.run"), type="primary", icon=":material/troubleshoot:")
    if go:
        with common.user_errors(t("rt.action")):
            st.session_state[RESULT_KEY] = retrieval_test.run(c, user, query, picked, int(k), mode or None)


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else i18n.fmt_num(x, digits)


def result(res: retrieval_test.HitTest) -> None:
    sim_note = "" if res.similarity_used else t("rt.sim_off")
    st.caption(t("rt.settings", mode=res.mode, fusion=res.fusion, alpha=_num(res.alpha, 2),
                 min_score=_num(res.min_score, 2), sim_note=sim_note, min_cov=f"{res.min_coverage:.0%}",
                 ms=i18n.fmt_num(res.took_ms, 0)))
    if not res.rows:
        st.info(t("rt.none"))
        return
    if res.answerable:
        st.success(t("rt.pass"), icon=":material/check_circle:")
    else:
        st.warning(safe_label(t("rt.fail", reason=res.refusal_reason or ""), 400), icon=":material/block:")
    st.dataframe(
        [{"rank": r.rank, "document": r.source, "position": r.position, "collection": r.collection,
          "fused": round(r.fused, 4), "dense": None if r.dense is None else round(r.dense, 4),
          "dense_rank": r.dense_rank, "bm25": None if r.bm25 is None else round(r.bm25, 3),
          "bm25_rank": r.bm25_rank, "coverage": f"{r.coverage:.0%}",
          "gate": t("rt.gate_pass") if r.passes_gate else t("rt.gate_fail")} for r in res.rows],
        hide_index=True, width="stretch",
        column_config={key: st.column_config.Column(t(f"rt.col.{key}")) for key in
                       ("rank", "document", "position", "collection", "fused", "dense", "dense_rank", "bm25",
                        "bm25_rank", "coverage", "gate")})
    st.markdown(f"**{t('rt.passages')}**")
    for r in res.rows:
        where = f" · {r.position}" if r.position else ""
        mark = "✓" if r.passes_gate else "✗"
        with st.expander(safe_label(f"{r.rank}. {mark} {r.title or r.source}{where} · {_num(r.fused, 4)}")):
            st.caption(safe_label(f"{r.source} · {r.collection} · " + t("rt.chunk", id=r.chunk_id, doc=r.document_id),
                                  400))
            if r.gate_note:
                st.caption(safe_label(r.gate_note, 400))
            st.markdown(safe_markdown(r.text))


user = common.require(session.RETRIEVAL_TEST)
st.title(t("rt.title"))
st.caption(t("rt.intro"))
form(user)
if (res := st.session_state.get(RESULT_KEY)) is not None:
    result(res)
