"""Documents (admin): upload files or a zipped folder, follow the queue, retry or delete."""

from __future__ import annotations

import streamlit as st

from app.services import documents, session
from ui import common
from ui.safe_text import safe_label
from ui.uploader import uploader

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
    names = documents.collection_names(c, user)
    left, right = st.columns(2)
    choice = left.selectbox("Collection", [*names, NEW], index=names.index("default") if "default" in names else 0,
                            key="upload_collection")
    new_name = right.text_input("New collection name", placeholder="only when creating one", key="upload_new")
    collection = new_name.strip() if choice == NEW else choice
    done = uploader(collection, c.settings.ui.max_upload_mb)
    if done is None:
        return
    st.session_state[BATCH_KEY] = [int(i) for i in done.get("ids", []) if isinstance(i, int)]
    queued, unchanged = int(done.get("queued", 0)), int(done.get("unchanged", 0))
    st.success(f"{int(done.get('files', 0))} file(s) received into “{safe_label(str(done.get('collection', '')))}”: "
               f"{queued} queued for indexing" + (f", {unchanged} unchanged (already there)" if unchanged else "")
               + ".")
    for r in [*done.get("refused", []), *done.get("failed", [])][:50]:
        if isinstance(r, dict):
            what = STATUS_LABEL.get(str(r.get("outcome", "")), str(r.get("outcome") or "failed"))
            st.warning(safe_label(f"{r.get('source', '')}: {what} — {r.get('reason') or ''}", 300))


@st.fragment(run_every=3)
def live_queue(name: str, status: str, collection: str) -> None:
    """Counts, the last upload's progress and the document table, refreshed every few seconds."""
    user = common.require(session.DOCUMENTS)
    c = common.container()
    counts = documents.counts(c, user)
    cols = st.columns(5)
    cols[0].metric("Indexed", counts.get("indexed", 0))
    cols[1].metric("Waiting", counts.get("queued", 0))
    cols[2].metric("Processing", counts.get("processing", 0))
    cols[3].metric("Failed", counts.get("failed", 0))
    cols[4].metric("Other", sum(v for k, v in counts.items() if k not in ("indexed", "queued", "processing",
                                                                           "failed")))
    batch = documents.docs_by_id(c, user, st.session_state.get(BATCH_KEY, []))
    if batch:
        done, total = documents.progress(batch)
        st.progress(done / total, text=f"Last upload: {done} of {total} file(s) processed"
                    + (" — all done" if done == total else " (updates live)"))
    rows = documents.list_docs(c, user, name, status, collection, limit=500)
    if not rows:
        st.caption("No documents match." if (name or status or collection) else "No documents yet: upload some above.")
        return
    picked = st.dataframe(
        [{"id": d.id, "file": d.source, "collection": d.collection, "status": STATUS_LABEL.get(d.status, d.status),
          "reason": d.reason or "", "chunks": d.n_chunks, "size_kb": round(d.size / 1024, 1),
          "uploaded_by": d.uploaded_by or "", "updated": common.fmt_time(d.updated_at)} for d in rows],
        hide_index=True, width="stretch",
        column_config={"id": st.column_config.NumberColumn("#", width="small"),
                       "file": st.column_config.TextColumn("File", width="medium"),
                       "collection": "Collection", "status": "Status",
                       "reason": st.column_config.TextColumn("Reason", width="large",
                                                             help="Select a row to read the whole reason."),
                       "chunks": "Chunks", "size_kb": "Size (KB)", "uploaded_by": "Uploaded by",
                       "updated": "Updated"},
        key="queue_table", on_select="rerun", selection_mode="single-row")
    chosen = [rows[i] for i in (picked.selection.rows if picked is not None else []) if i < len(rows)]
    for d in chosen:  # the full reason, wrapped, however long (the table cell cuts it)
        text = f"#{d.id} · {d.source} · {STATUS_LABEL.get(d.status, d.status)}" + (f": {d.reason}" if d.reason else "")
        (st.error if d.status == "failed" else st.info)(safe_label(text, 4000), icon=":material/info:")


def actions(user: session.SessionUser, name: str, status: str, collection: str) -> None:
    c = common.container()
    rows = documents.list_docs(c, user, name, status, collection, limit=500)
    if not rows:
        return
    with st.expander("Retry or delete a document", icon=":material/build:"):
        options = {d.id: d for d in rows}
        picked = st.selectbox("Document", list(options),
                              format_func=lambda i: f"#{i} · {options[i].source} ({options[i].status})")
        doc = options[picked]
        if doc.status == "needs_password":
            password_form(c, user, doc)
        left, right = st.columns(2)
        if left.button("Retry", icon=":material/refresh:", disabled=doc.status in PENDING,
                       help="Process the stored original again (after a fix or a new setting)."):
            with common.user_errors("Retry"):
                documents.retry_docs(c, user, [doc.id])
                common.flash(f"Document #{doc.id} queued again.")
                st.rerun()
        sure = right.checkbox("I want to delete it", key=f"sure_{doc.id}")
        if right.button("Delete", icon=":material/delete:", disabled=not sure, type="primary"):
            with common.user_errors("Delete"):
                documents.delete_doc(c, user, doc.id)
                common.flash(f"Deleted document #{doc.id} ({safe_label(doc.source)}).")
                st.rerun()



def password_form(c, user: session.SessionUser, doc) -> None:
    """The file's password, used once to open and index it here and now; the form clears on submit and
    nothing keeps it (documents.retry_docs)."""
    with st.form(f"password_{doc.id}", clear_on_submit=True):
        password = st.text_input("Password of this file", type="password",
                                 help="Opens the file once to index it; never stored or logged.")
        if st.form_submit_button("Open and index", icon=":material/key:"):
            with common.user_errors("Retry"), st.spinner("Opening and indexing…"):
                documents.retry_docs(c, user, [doc.id], password=password)
                view = documents.show_doc(c, user, doc.id)
                common.flash(safe_label(f"Document #{doc.id}: {STATUS_LABEL.get(view.status, view.status)}"
                                        + (f" ({view.reason})" if view.reason else ""), 300))
                st.rerun()


user = common.require(session.DOCUMENTS)
st.title("Documents")
common.show_flash()
upload_form(user)
st.subheader("Queue and library")
f1, f2, f3 = st.columns([2, 1, 1])
name_filter = f1.text_input("Search by name", placeholder="part of a file name", key="doc_search")
status_filter = f2.selectbox("Status", ["", *STATUS_LABEL], format_func=lambda s: STATUS_LABEL.get(s, "any status"))
collection_filter = f3.selectbox("Collection", ["", *documents.collection_names(common.container(), user)],
                                 format_func=lambda s: s or "all collections")
live_queue(name_filter, status_filter, collection_filter)
actions(user, name_filter, status_filter, collection_filter)
