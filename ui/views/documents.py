"""Documents (admin): upload files or a zipped folder, follow the queue, retry or delete."""

from __future__ import annotations

import streamlit as st

from app.services import documents, session, users
from ui import common, i18n, pii_policy
from ui.i18n import t
from ui.safe_text import safe_label
from ui.uploader import uploader

i18n.register({
    "docs.status.queued": {"en": "queued", "zh": "排队中"},
    "docs.status.processing": {"en": "processing…", "zh": "处理中…"},
    "docs.status.indexed": {"en": "indexed", "zh": "已索引"},
    "docs.status.failed": {"en": "FAILED", "zh": "失败"},
    "docs.status.needs_password": {"en": "needs password", "zh": "需要密码"},
    "docs.status.empty": {"en": "empty (no text)", "zh": "空（无文字）"},
    "docs.status.duplicate": {"en": "duplicate", "zh": "重复"},
    "docs.status.unsupported": {"en": "unsupported format", "zh": "不支持的格式"},
    "docs.status.too_large": {"en": "too large", "zh": "文件过大"},
    "docs.new_collection_option": {"en": "➕ New collection…", "zh": "➕ 新建文档集…"},
    "docs.collection": {"en": "Collection", "zh": "文档集"},
    "docs.new_collection": {"en": "New collection name", "zh": "新文档集名称"},
    "docs.new_collection_hint": {"en": "only when creating one", "zh": "仅在新建时填写"},
    "docs.pii_of": {"en": "Personal data scrubbed from this collection's documents: {policy}.",
                    "zh": "该文档集的文档脱敏范围：{policy}。"},
    "docs.pii_new": {"en": "A new collection scrubs all personal data, names and addresses too; for public "
                           "documents create it under Users & access with “Identifiers only”.",
                     "zh": "新文档集默认去除全部个人信息（含姓名、地址）；"
                           "公开文档请先在“用户与权限”中以“仅证件号等标识”创建。"},
    "docs.received": {"en": "{files} file(s) received into “{collection}”: {queued} queued for indexing",
                      "zh": "已接收 {files} 个文件到“{collection}”：{queued} 个排队等待索引"},
    "docs.unchanged": {"en": ", {n} unchanged (already there)", "zh": "，{n} 个未变（已存在）"},
    "docs.m.indexed": {"en": "Indexed", "zh": "已索引"},
    "docs.m.waiting": {"en": "Waiting", "zh": "等待中"},
    "docs.m.processing": {"en": "Processing", "zh": "处理中"},
    "docs.m.failed": {"en": "Failed", "zh": "失败"},
    "docs.m.other": {"en": "Other", "zh": "其他"},
    "docs.progress": {"en": "Last upload: {done} of {total} file(s) processed",
                      "zh": "最近一次上传：已处理 {done}/{total} 个文件"},
    "docs.all_done": {"en": " — all done", "zh": "——全部完成"},
    "docs.live": {"en": " (updates live)", "zh": "（实时更新）"},
    "docs.none_match": {"en": "No documents match.", "zh": "没有符合条件的文档。"},
    "docs.none_yet": {"en": "No documents yet: upload some above.", "zh": "还没有文档，请在上方上传。"},
    "docs.col.file": {"en": "File", "zh": "文件"},
    "docs.col.collection": {"en": "Collection", "zh": "文档集"},
    "docs.col.status": {"en": "Status", "zh": "状态"},
    "docs.col.reason": {"en": "Reason", "zh": "原因"},
    "docs.col.reason_help": {"en": "Select a row to read the whole reason.", "zh": "选中一行可查看完整原因。"},
    "docs.col.chunks": {"en": "Chunks", "zh": "段落数"},
    "docs.col.size": {"en": "Size (KB)", "zh": "大小（KB）"},
    "docs.col.uploaded_by": {"en": "Uploaded by", "zh": "上传者"},
    "docs.col.updated": {"en": "Updated", "zh": "更新时间"},
    "docs.retry_or_delete": {"en": "Retry or delete a document", "zh": "重试或删除文档"},
    "docs.document": {"en": "Document", "zh": "文档"},
    "docs.retry": {"en": "Retry", "zh": "重试"},
    "docs.retry_help": {"en": "Process the stored original again (after a fix or a new setting).",
                        "zh": "重新处理已保存的原始文件（修复或更改设置之后）。"},
    "docs.queued_again": {"en": "Document #{id} queued again.", "zh": "文档 #{id} 已重新排队。"},
    "docs.sure": {"en": "I want to delete it", "zh": "我确定要删除"},
    "docs.delete": {"en": "Delete", "zh": "删除"},
    "docs.deleted": {"en": "Deleted document #{id} ({source}).", "zh": "已删除文档 #{id}（{source}）。"},
    "docs.file_password": {"en": "Password of this file", "zh": "此文件的密码"},
    "docs.file_password_help": {"en": "Opens the file once to index it; never stored or logged.",
                                "zh": "仅用于打开一次并建立索引，不会保存或记录。"},
    "docs.open_and_index": {"en": "Open and index", "zh": "打开并索引"},
    "docs.opening": {"en": "Opening and indexing…", "zh": "正在打开并索引…"},
    "docs.title": {"en": "Documents", "zh": "文档"},
    "docs.queue": {"en": "Queue and library", "zh": "队列与文档库"},
    "docs.search": {"en": "Search by name", "zh": "按名称搜索"},
    "docs.search_hint": {"en": "part of a file name", "zh": "文件名的一部分"},
    "docs.status": {"en": "Status", "zh": "状态"},
    "docs.any_status": {"en": "any status", "zh": "任意状态"},
    "docs.all_collections": {"en": "all collections", "zh": "全部文档集"},
})


def status_label(status: str) -> str:
    return t("docs.status." + status) if status in STATUS_LABEL else status

BATCH_KEY = "kb_last_batch"  # document ids of this session's last upload
NEW = "➕ New collection…"
STATUS_LABEL = {
    "queued": "queued", "processing": "processing…", "indexed": "indexed", "failed": "FAILED",
    "needs_password": "needs password", "empty": "empty (no text)", "duplicate": "duplicate",
    "unsupported": "unsupported format", "too_large": "too large",
}
PENDING = ("queued", "processing")


def upload_form(user: session.SessionUser) -> None:
    """Collection first, then the uploader, which sends each file on its own to /kb/upload (ui/uploader.py):
    nothing passes through Streamlit's in-memory upload buffer, and the size limit holds before a file is read."""
    c = common.container()
    policies = {x.name: x.pii for x in users.collections(c, user)}
    names = list(policies)
    left, right = st.columns(2)
    choice = left.selectbox(t("docs.collection"), [*names, NEW],
                            index=names.index("default") if "default" in names else 0, key="upload_collection",
                            format_func=lambda n: t("docs.new_collection_option") if n == NEW else n)
    new_name = right.text_input(t("docs.new_collection"), placeholder=t("docs.new_collection_hint"), key="upload_new")
    collection = new_name.strip() if choice == NEW else choice
    policy = policies.get(collection)
    st.caption(t("docs.pii_of", policy=pii_policy.label(policy)) if policy else t("docs.pii_new"))
    done = uploader(collection, c.settings.ui.max_upload_mb)
    if done is None:
        return
    st.session_state[BATCH_KEY] = [int(i) for i in done.get("ids", []) if isinstance(i, int)]
    queued, unchanged = int(done.get("queued", 0)), int(done.get("unchanged", 0))
    st.success(t("docs.received", files=i18n.fmt_int(int(done.get("files", 0))),
                 collection=safe_label(str(done.get("collection", ""))), queued=i18n.fmt_int(queued))
               + (t("docs.unchanged", n=i18n.fmt_int(unchanged)) if unchanged else "") + ".")
    for r in [*done.get("refused", []), *done.get("failed", [])][:50]:
        if isinstance(r, dict):
            what = status_label(str(r.get("outcome") or "failed"))
            st.warning(safe_label(f"{r.get('source', '')}: {what} — {r.get('reason') or ''}", 300))


@st.fragment(run_every=3)
def live_queue(name: str, status: str, collection: str) -> None:
    """Counts, the last upload's progress and the document table, refreshed every few seconds."""
    user = common.require(session.DOCUMENTS)
    c = common.container()
    counts = documents.counts(c, user)
    cols = st.columns(5)
    cols[0].metric(t("docs.m.indexed"), i18n.fmt_int(counts.get("indexed", 0)))
    cols[1].metric(t("docs.m.waiting"), i18n.fmt_int(counts.get("queued", 0)))
    cols[2].metric(t("docs.m.processing"), i18n.fmt_int(counts.get("processing", 0)))
    cols[3].metric(t("docs.m.failed"), i18n.fmt_int(counts.get("failed", 0)))
    cols[4].metric(t("docs.m.other"), i18n.fmt_int(sum(v for k, v in counts.items()
                                                       if k not in ("indexed", "queued", "processing", "failed"))))
    batch = documents.docs_by_id(c, user, st.session_state.get(BATCH_KEY, []))
    if batch:
        done, total = documents.progress(batch)
        st.progress(done / total, text=t("docs.progress", done=i18n.fmt_int(done), total=i18n.fmt_int(total))
                    + (t("docs.all_done") if done == total else t("docs.live")))
    rows = documents.list_docs(c, user, name, status, collection, limit=500)
    if not rows:
        st.caption(t("docs.none_match") if (name or status or collection) else t("docs.none_yet"))
        return
    picked = st.dataframe(
        [{"id": d.id, "file": d.source, "collection": d.collection, "status": status_label(d.status),
          "reason": d.reason or "", "chunks": d.n_chunks, "size_kb": round(d.size / 1024, 1),
          "uploaded_by": d.uploaded_by or "", "updated": common.fmt_time(d.updated_at)} for d in rows],
        hide_index=True, width="stretch",
        column_config={"id": st.column_config.NumberColumn("#", width="small"),
                       "file": st.column_config.TextColumn(t("docs.col.file"), width="medium"),
                       "collection": t("docs.col.collection"), "status": t("docs.col.status"),
                       "reason": st.column_config.TextColumn(t("docs.col.reason"), width="large",
                                                             help=t("docs.col.reason_help")),
                       "chunks": t("docs.col.chunks"), "size_kb": t("docs.col.size"),
                       "uploaded_by": t("docs.col.uploaded_by"), "updated": t("docs.col.updated")},
        key="queue_table", on_select="rerun", selection_mode="single-row")
    chosen = [rows[i] for i in (picked.selection.rows if picked is not None else []) if i < len(rows)]
    for d in chosen:  # the full reason, wrapped, however long (the table cell cuts it)
        text = f"#{d.id} · {d.source} · {status_label(d.status)}" + (f": {d.reason}" if d.reason else "")
        (st.error if d.status == "failed" else st.info)(safe_label(text, 4000), icon=":material/info:")


def actions(user: session.SessionUser, name: str, status: str, collection: str) -> None:
    c = common.container()
    rows = documents.list_docs(c, user, name, status, collection, limit=500)
    if not rows:
        return
    with st.expander(t("docs.retry_or_delete"), icon=":material/build:"):
        options = {d.id: d for d in rows}
        picked = st.selectbox(t("docs.document"), list(options),
                              format_func=lambda i: f"#{i} · {options[i].source} ({status_label(options[i].status)})")
        doc = options[picked]
        if doc.status == "needs_password":
            password_form(c, user, doc)
        left, right = st.columns(2)
        if left.button(t("docs.retry"), icon=":material/refresh:", disabled=doc.status in PENDING,
                       help=t("docs.retry_help")):
            with common.user_errors(t("docs.retry")):
                documents.retry_docs(c, user, [doc.id])
                common.flash(t("docs.queued_again", id=doc.id))
                st.rerun()
        sure = right.checkbox(t("docs.sure"), key=f"sure_{doc.id}")
        if right.button(t("docs.delete"), icon=":material/delete:", disabled=not sure, type="primary"):
            with common.user_errors(t("docs.delete")):
                documents.delete_doc(c, user, doc.id)
                common.flash(t("docs.deleted", id=doc.id, source=safe_label(doc.source)))
                st.rerun()



def password_form(c, user: session.SessionUser, doc) -> None:
    """The file's password, used once to open and index it here and now; the form clears on submit and
    nothing keeps it (documents.retry_docs)."""
    with st.form(f"password_{doc.id}", clear_on_submit=True):
        password = st.text_input(t("docs.file_password"), type="password", help=t("docs.file_password_help"))
        if st.form_submit_button(t("docs.open_and_index"), icon=":material/key:"):
            with common.user_errors(t("docs.retry")), st.spinner(t("docs.opening")):
                documents.retry_docs(c, user, [doc.id], password=password)
                view = documents.show_doc(c, user, doc.id)
                common.flash(safe_label(f"{t('docs.document')} #{doc.id}: {status_label(view.status)}"
                                        + (f" ({view.reason})" if view.reason else ""), 300))
                st.rerun()


user = common.require(session.DOCUMENTS)
st.title(t("docs.title"))
common.show_flash()
upload_form(user)
st.subheader(t("docs.queue"))
f1, f2, f3 = st.columns([2, 1, 1])
name_filter = f1.text_input(t("docs.search"), placeholder=t("docs.search_hint"), key="doc_search")
status_filter = f2.selectbox(t("docs.status"), ["", *STATUS_LABEL],
                             format_func=lambda s: status_label(s) if s else t("docs.any_status"))
collection_filter = f3.selectbox(t("docs.collection"), ["", *documents.collection_names(common.container(), user)],
                                 format_func=lambda s: s or t("docs.all_collections"))
live_queue(name_filter, status_filter, collection_filter)
actions(user, name_filter, status_filter, collection_filter)
