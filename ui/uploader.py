"""The Documents page's uploader: files, .zip archives or whole folders, straight to ``POST /kb/upload``.

A Streamlit v2 component (its script runs in the page itself, on the same origin, so the session cookie
goes along): the browser sends one file per request, three at a time, shows each file's progress and
outcome, skips files over the size limit without sending them, and tells the page once it is done
(the document ids, so the page can follow their indexing). No file passes through Streamlit's
in-memory upload buffer; the server streams each to disk (ui/upload_route.py).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import i18n
from ui.i18n import t
from ui.upload_route import UPLOAD_PATH

i18n.register({
    "up.files": {"en": "Choose files or .zip archives", "zh": "选择文件或 .zip 压缩包"},
    "up.folder": {"en": "Choose a folder", "zh": "选择文件夹"},
    "up.start": {"en": "Upload and index", "zh": "上传并建立索引"},
    "up.chosen": {"en": "{n} file(s) chosen, {size}", "zh": "已选择 {n} 个文件，共 {size}"},
    "up.none": {"en": "No file chosen yet.", "zh": "尚未选择文件。"},
    "up.progress": {"en": "{done} of {total} file(s) sent", "zh": "已发送 {done}/{total} 个文件"},
    "up.waiting": {"en": "waiting", "zh": "等待中"},
    "up.sending": {"en": "sending", "zh": "发送中"},
    "up.queued": {"en": "queued for indexing", "zh": "已排队等待索引"},
    "up.unchanged": {"en": "unchanged (already there)", "zh": "未变化（已存在）"},
    "up.too_large": {"en": "too large: not sent", "zh": "文件过大：未发送"},
    "up.skipped": {"en": "skipped (system file)", "zh": "已跳过（系统文件）"},
    "up.failed": {"en": "failed", "zh": "失败"},
    "up.limit": {"en": "At most {mb} MB per file. Zip archives are unpacked; Office, PDF, e-mail, web, text and "
                       "table files are read. Folders of thousands of files are fine: each file is sent on its own.",
                 "zh": "每个文件最大 {mb} MB。zip 压缩包会被解开；可读取 Office、PDF、邮件、网页、文本和表格文件。"
                       "可上传包含数千个文件的文件夹：每个文件单独发送。"},
    "up.password": {"en": "Password of protected files (optional)", "zh": "受保护文件的密码（可选）"},
    "up.indexed": {"en": "indexed", "zh": "已索引"},
    "up.pick_collection": {"en": "Choose or name a collection first.", "zh": "请先选择或填写文档集。"},
})

_JS = r"""
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const S = (window.__kbUploader = window.__kbUploader || { files: [], rows: [], running: false, sent: 0 });
  S.data = data;
  S.trigger = setTriggerValue;
  const L = data.labels;
  const fmtSize = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";

  let root = parentElement.querySelector(".kbup");
  if (!root) {
    root = document.createElement("div");
    root.className = "kbup";
    root.innerHTML = `
      <div class="kbup-pick">
        <label class="kbup-btn">${L.files}<input type="file" multiple data-kind="files"></label>
        <label class="kbup-btn">${L.folder}<input type="file" multiple webkitdirectory data-kind="folder"></label>
        <input type="password" class="kbup-pw" autocomplete="off" aria-label="${L.password}"
               placeholder="${L.password}" data-testid="kbUploadPassword">
        <button type="button" class="kbup-go" data-testid="kbUploadStart">${L.start}</button>
      </div>
      <div class="kbup-hint"></div>
      <div class="kbup-summary" data-testid="kbUploadSummary"></div>
      <progress class="kbup-bar" max="1" value="0" hidden></progress>
      <div class="kbup-list" data-testid="kbUploadList" role="list"></div>`;
    parentElement.appendChild(root);
    root.querySelectorAll("input[type=file]").forEach((input) => {
      input.addEventListener("change", () => {
        if (S.running) return;
        S.files = Array.from(input.files || []);
        S.rows = [];
        S.state = [];  // a new choice: no row keeps the outcome of the previous batch
        S.notice = "";
        S.sent = 0;
        input.value = "";
        draw(true);
      });
    });
    root.querySelector(".kbup-go").addEventListener("click", start);
  }
  S.root = root;
  root.querySelector(".kbup-hint").textContent = L.limit;
  draw(true);

  function rel(f) { return f.webkitRelativePath || f.name; }

  function draw(full) {
    const r = S.root;
    if (!r) return;
    const L = S.data.labels;
    const total = S.files.length;
    const bytes = S.files.reduce((a, f) => a + f.size, 0);
    r.querySelector(".kbup-go").disabled = S.running || total === 0;
    r.querySelector(".kbup-summary").textContent = S.notice ? S.notice : total === 0 ? L.none :
      (S.running || S.sent ? L.progress.replace("{done}", S.sent).replace("{total}", total)
                           : L.chosen.replace("{n}", total).replace("{size}", fmtSize(bytes)));
    const bar = r.querySelector(".kbup-bar");
    bar.hidden = !(S.running || S.sent);
    bar.value = total ? S.sent / total : 0;
    const list = r.querySelector(".kbup-list");
    if (full) {
      list.replaceChildren();
      S.rows = S.files.map((f, i) => {
        const row = document.createElement("div");
        row.className = "kbup-row";
        row.setAttribute("role", "listitem");
        const name = document.createElement("span");
        name.className = "kbup-name";
        name.textContent = rel(f);  // text, never HTML
        const prog = document.createElement("progress");
        prog.max = 1; prog.value = 0;
        const st = document.createElement("span");
        st.className = "kbup-state";
        row.append(name, prog, st);
        list.appendChild(row);
        const old = S.state && S.state[i];
        return { row, prog, st, state: old || { text: L.waiting, frac: 0, cls: "" } };
      });
    }
    S.rows.forEach(paint);
  }

  function paint(entry) {
    entry.prog.value = entry.state.frac;
    entry.st.textContent = entry.state.text;
    entry.row.dataset.state = entry.state.cls;
  }

  function set(i, text, frac, cls) {
    S.state = S.state || [];
    S.state[i] = { text, frac, cls };
    const e = S.rows[i];
    if (e) { e.state = S.state[i]; paint(e); }
  }

  function sendOne(i, f) {
    return new Promise((resolve) => {
      const L = S.data.labels;
      if (f.size > S.data.maxBytes) {
        set(i, L.too_large, 1, "refused");
        S.out.refused.push({ source: rel(f), outcome: "too_large" });
        return resolve();
      }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", S.data.endpoint);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-Kb-Upload", "1");
      xhr.setRequestHeader("X-Kb-File-Name", encodeURIComponent(rel(f)));
      xhr.setRequestHeader("X-Kb-Collection", encodeURIComponent(S.data.collection));
      if (S.password) xhr.setRequestHeader("X-Kb-File-Password", encodeURIComponent(S.password));  // indexed now
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) set(i, L.sending, ev.loaded / ev.total, "sending"); };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        const results = body.results || [];
        if (results.length === 0 && xhr.status === 200) {
          set(i, L.skipped, 1, "skipped");
        } else if (results.length === 0) {
          set(i, L.failed + ": " + (body.error || xhr.status), 1, "failed");
          S.out.failed.push({ source: rel(f), reason: body.error || String(xhr.status) });
        }
        for (const r of results) {
          if (r.document_id) S.out.ids.push(r.document_id);
          if (r.outcome === "queued") { S.out.queued += 1; set(i, L.queued, 1, "queued"); }
          else if (r.outcome === "unchanged") { S.out.unchanged += 1; set(i, L.unchanged, 1, "unchanged"); }
          else if (r.outcome === "indexed") { set(i, L.indexed, 1, "queued"); }
          else {
            set(i, (L[r.outcome] || r.outcome) + (r.reason ? ": " + r.reason : ""), 1, "refused");
            S.out.refused.push({ source: r.source, outcome: r.outcome, reason: r.reason || "" });
          }
        }
        S.out.files += Math.max(1, results.length);
        resolve();
      };
      xhr.onerror = () => {
        set(i, L.failed, 1, "failed");
        S.out.failed.push({ source: rel(f), reason: "network" });
        resolve();
      };
      xhr.send(f);
    });
  }

  async function start() {
    if (S.running || !S.files.length) return;
    if (!S.data.collection) {
      S.notice = S.data.labels.pick_collection;  // kept until the next choice or start, even across redraws
      draw(false);
      return;
    }
    const pw = S.root.querySelector(".kbup-pw");
    S.password = pw.value; pw.value = "";  // used for this batch only, then forgotten
    S.running = true; S.sent = 0; S.state = []; S.notice = "";
    S.out = { collection: S.data.collection, files: 0, queued: 0, unchanged: 0, ids: [], refused: [], failed: [] };
    draw(true);
    let next = 0;
    const worker = async () => {
      while (next < S.files.length) {
        const i = next++;
        await sendOne(i, S.files[i]);
        S.sent += 1;
        draw(false);
      }
    };
    await Promise.all(Array.from({ length: Math.min(S.data.concurrency, S.files.length) }, worker));
    S.running = false; S.password = "";
    draw(false);
    S.out.refused = S.out.refused.slice(0, 200);
    S.out.failed = S.out.failed.slice(0, 200);
    S.trigger("done", S.out);
  }
}
"""

_CSS = """
.kbup { font-family: inherit; font-size: 0.95rem; }
.kbup-pick { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
.kbup-btn, .kbup-go { border: 1px solid rgba(49,51,63,.25); border-radius: .5rem; padding: .35rem .8rem;
  background: white; cursor: pointer; }
.kbup-btn input { display: block; margin-top: .25rem; font-size: .8rem; }
.kbup-go { background: var(--st-primary-color, #ff4b4b); color: white; border-color: transparent; font-weight: 600; }
.kbup-go:disabled { opacity: .45; cursor: default; }
.kbup-hint { color: rgba(49,51,63,.6); font-size: .8rem; margin: .35rem 0; }
.kbup-summary { margin: .25rem 0; font-weight: 600; }
.kbup-bar { width: 100%; }
.kbup-list { max-height: 16rem; overflow-y: auto; margin-top: .25rem; }
.kbup-row { display: grid; grid-template-columns: minmax(0, 3fr) 8rem minmax(0, 2fr); gap: .5rem;
  align-items: center; padding: .1rem 0; border-bottom: 1px solid rgba(49,51,63,.08); font-size: .85rem; }
.kbup-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.kbup-row[data-state=refused] .kbup-state, .kbup-row[data-state=failed] .kbup-state { color: #b3261e; }
.kbup-row[data-state=queued] .kbup-state { color: #1b7f3b; }
"""

_component = st.components.v2.component("kb_uploader", js=_JS, css=_CSS, isolate_styles=False)


def uploader(collection: str, max_upload_mb: float, key: str = "kb_uploader") -> dict[str, Any] | None:
    """Show the uploader for ``collection``; returns the finished batch once (files, queued, unchanged,
    ids, refused, failed) on the run after the last file was sent, else None."""
    labels = {k.removeprefix("up."): t(k) for k in i18n.STRINGS if k.startswith("up.")}
    labels["limit"] = t("up.limit", mb=f"{max_upload_mb:g}")
    result = _component(data={"endpoint": UPLOAD_PATH, "collection": collection, "labels": labels,
                              "maxBytes": int(max_upload_mb * 1024 * 1024), "concurrency": 3},
                        key=key, on_done_change=lambda: None)
    done = getattr(result, "done", None)
    return done if isinstance(done, dict) else None
