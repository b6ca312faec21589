"""The interface in English and Chinese: ``t(key)`` looks a string up in the current language.

The language comes, in order, from the user's own choice (the sidebar switch, remembered per user
through ``app.services.web_sessions``), from the browser (``st.context.locale``, else the
Accept-Language header: ``zh-CN``, ``zh-TW``, ``zh`` … give Chinese), else English.

Every key has both languages; tests/ui/test_i18n.py checks that and that every ``t("…")`` literal
in ui/ names a key. A page module with many strings of its own may keep them next to it and call
``register({...})`` at import, with keys prefixed by its area ("feedback.helpful"); a key defined
twice with different text is an error, so two modules cannot silently fight over one.

Placeholders use ``str.format`` names: ``t("chat.too_long", n=fmt_int(4000))``.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Any

log = logging.getLogger("kb.ui")

LANGS = ("en", "zh")
LANG_NAMES = {"en": "English", "zh": "中文"}
LANG_KEY = "kb_lang"  # st.session_state: the language of this browser session

STRINGS: dict[str, dict[str, str]] = {
    # shell and navigation
    "app.about": {"en": "kb: a private knowledge base.", "zh": "kb：私有知识库。"},
    "nav.chat": {"en": "Chat", "zh": "问答"},
    "nav.documents": {"en": "Documents", "zh": "文档"},
    "nav.users": {"en": "Users & access", "zh": "用户与权限"},
    "nav.query_log": {"en": "Query log", "zh": "查询日志"},
    "nav.retrieval_test": {"en": "Retrieval test", "zh": "检索测试"},
    "nav.dashboard": {"en": "Dashboard", "zh": "仪表盘"},
    "nav.account": {"en": "My account", "zh": "我的账户"},
    "nav.sign_in": {"en": "Sign in", "zh": "登录"},
    "role.staff": {"en": "staff", "zh": "员工"},
    "role.admin": {"en": "admin", "zh": "管理员"},
    "role.auditor": {"en": "auditor", "zh": "审计员"},
    "sidebar.language": {"en": "Language", "zh": "语言"},
    "sidebar.sign_out": {"en": "Sign out", "zh": "退出登录"},
    # sign-in
    "login.tagline": {"en": "Your organisation's private knowledge base", "zh": "您所在机构的私有知识库"},
    "login.user": {"en": "User name", "zh": "用户名"},
    "login.password": {"en": "Password", "zh": "密码"},
    "login.submit": {"en": "Sign in", "zh": "登录"},
    "login.continue": {"en": "Continue", "zh": "继续"},
    "login.finishing": {"en": "Signing you in…", "zh": "正在登录…"},
    "login.internal": {"en": "Sign-in is not possible right now because of an internal error. The server log has "
                             "details.", "zh": "由于内部错误，暂时无法登录。详情见服务器日志。"},
    "login.handoff_failed": {"en": "The sign-in could not be completed (it took too long, or the link was used "
                                   "already). Please sign in again.",
                             "zh": "登录未能完成（耗时过长，或已被使用）。请重新登录。"},
    "session.ended": {"en": "Your session ended (idle too long, signed out elsewhere, or the account was changed). "
                            "Sign in again.",
                      "zh": "您的会话已结束（闲置过久、已在别处退出，或账户已变更）。请重新登录。"},
    "access.denied": {"en": "You do not have access to this page.", "zh": "您无权访问此页面。"},
    "error.internal": {"en": "{action} failed because of an internal error. The server log has the details.",
                       "zh": "{action}失败：内部错误。详情见服务器日志。"},
    # own account
    "account.title": {"en": "My account", "zh": "我的账户"},
    "account.change_password": {"en": "Change your password", "zh": "修改密码"},
    "account.current": {"en": "Current password", "zh": "当前密码"},
    "account.new": {"en": "New password", "zh": "新密码"},
    "account.repeat": {"en": "New password again", "zh": "再次输入新密码"},
    "account.submit": {"en": "Change password", "zh": "修改密码"},
    "account.mismatch": {"en": "The two new passwords differ. Type the same one twice.",
                         "zh": "两次输入的新密码不一致，请重新输入。"},
    "account.changed": {"en": "Your password was changed. Your other sessions have been signed out.",
                        "zh": "密码已修改，您在其他地方的会话均已退出。"},
    "account.first_admin": {"en": "You are signed in with the first admin password set at installation. Choose "
                                  "your own password now.",
                            "zh": "您正在使用安装时设置的初始管理员密码登录，请立即设置您自己的密码。"},
    "account.action": {"en": "Changing the password", "zh": "修改密码"},
    "account.signed_in_since": {"en": "Signed in since {when}.", "zh": "登录时间：{when}。"},
    # chat
    "chat.title": {"en": "Ask the documents", "zh": "向文档提问"},
    "chat.search_in": {"en": "Search in", "zh": "检索范围"},
    "chat.search_in_help": {"en": "Only collections you have been granted are listed.",
                            "zh": "仅列出您有权访问的文档集。"},
    "chat.new": {"en": "New conversation", "zh": "新对话"},
    "chat.new_help": {"en": "Start over: earlier questions are no longer taken into account.",
                      "zh": "重新开始：之前的问题不再作为上下文。"},
    "chat.export": {"en": "Export as Markdown", "zh": "导出为 Markdown"},
    "chat.export_help": {"en": "This conversation with its cited sources, as a Markdown file.",
                         "zh": "将本次对话及其引用来源导出为 Markdown 文件。"},
    "chat.recent": {"en": "Your recent questions", "zh": "最近的问题"},
    "chat.recent_empty": {"en": "Questions you ask appear here.", "zh": "您提出的问题会显示在这里。"},
    "chat.no_access": {"en": "You have no access to any collection yet. Ask an administrator to grant you one.",
                       "zh": "您还没有任何文档集的访问权限，请联系管理员授权。"},
    "chat.intro": {"en": "Answers come only from the documents in the collections you can read, with numbered "
                         "sources. When the documents do not cover a question, kb says so instead of guessing.",
                   "zh": "回答只来自您有权阅读的文档集，并附编号来源。文档未涉及的问题，kb 会直接说明，不会猜测。"},
    "chat.placeholder": {"en": "Ask a question about your documents", "zh": "就您的文档提问"},
    "chat.too_long": {"en": "Your question is {n} characters long; the limit is {limit}. Shorten it (ask about "
                            "one thing at a time) and send it again. Your text is kept below.",
                      "zh": "您的问题共 {n} 个字符，上限为 {limit} 个。请缩短（一次只问一件事）后重新发送。"
                            "原文保留在下方。"},
    "chat.too_long_text": {"en": "Your question (not sent)", "zh": "您的问题（未发送）"},
    "chat.pick_collection": {"en": "Pick at least one collection to search in (left).",
                             "zh": "请在左侧至少选择一个检索范围。"},
    "chat.searching": {"en": "Searching your documents…", "zh": "正在检索文档…"},
    "chat.writing": {"en": "Writing the answer…", "zh": "正在生成回答…"},
    "chat.thinking": {"en": "Thinking…", "zh": "思考中…"},
    "chat.searched_for": {"en": "Searched for: {text}", "zh": "检索内容：{text}"},
    "chat.internal": {"en": "The answer could not be produced because of an internal error. The server log has the "
                            "details.", "zh": "由于内部错误，未能生成回答。详情见服务器日志。"},
    "chat.ended": {"en": "The answer ended unexpectedly; please ask again.", "zh": "回答意外中断，请重新提问。"},
    "chat.reasoning": {"en": "Reasoning", "zh": "推理过程"},
    "chat.no_answer": {"en": "_(the model returned no answer)_", "zh": "_（模型没有给出回答）_"},
    "chat.scrubbed": {"en": "{marks}: personal data removed from the documents when they were indexed; kb cannot "
                            "say what was there. Admins can keep names and addresses in collections of public "
                            "documents.",
                      "zh": "{marks}：索引时从文档中去除的个人信息，kb 无法得知原文。"
                            "管理员可以让公开文档的文档集保留姓名和地址。"},
    "chat.sources": {"en": "Sources — open one to see the passage", "zh": "来源：展开可查看原文段落"},
    "chat.uncited": {"en": "The answer cites no passage. Passages consulted:",
                     "zh": "回答未引用任何段落。参考过的段落："},
    "chat.no_basis": {"en": "No basis to answer: {reason}", "zh": "无依据回答：{reason}"},
    "chat.source_caption": {"en": "Document: {source} · collection {collection}{where}",
                            "zh": "文档：{source} · 文档集 {collection}{where}"},
    "chat.timing": {"en": "{seconds} s", "zh": "{seconds} 秒"},
    "chat.timing_rate": {"en": "{seconds} s · {rate} tokens/s", "zh": "{seconds} 秒 · 每秒 {rate} 个词元"},
    "chat.admin_no_collections": {"en": "There are no collections with documents yet: upload some first.",
                                  "zh": "还没有包含文档的文档集，请先上传文档。"},
    # export (written into the Markdown file, in the language of the interface)
    "export.title": {"en": "Conversation", "zh": "对话记录"},
    "export.meta": {"en": "Exported by {user} on {when} from kb.", "zh": "由 {user} 于 {when} 从 kb 导出。"},
    "export.question": {"en": "Question", "zh": "问题"},
    "export.answer": {"en": "Answer", "zh": "回答"},
    "export.sources": {"en": "Sources", "zh": "来源"},
    "export.not_answered": {"en": "Not answered: {reason}", "zh": "未回答：{reason}"},
    "export.collection": {"en": "collection", "zh": "文档集"},
    # query log (the parts this module owns)
    "log.title": {"en": "Query log", "zh": "查询日志"},
}


def register(table: dict[str, dict[str, str]]) -> None:
    """Add a module's own strings. Every entry needs both languages; redefining a key differently fails."""
    for key, texts in table.items():
        missing = [lang for lang in LANGS if not texts.get(lang)]
        if missing:
            raise ValueError(f"i18n key {key!r} has no text for {', '.join(missing)}")
        if key in STRINGS and STRINGS[key] != texts:
            raise ValueError(f"i18n key {key!r} is already defined with other text")
        STRINGS[key] = dict(texts)


def normalize(tag: str | None) -> str | None:
    """'zh-CN', 'zh_Hans', 'ZH' → 'zh'; 'en-GB' → 'en'; anything else → None."""
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGS else None


def from_accept_language(header: str | None) -> str | None:
    """The first supported language in an Accept-Language header, by quality then order."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if (lang := normalize(tag)) and q > 0:
            ranked.append((-q, i, lang))
    return min(ranked)[2] if ranked else None


def browser_language() -> str:
    """What the browser asks for (st.context.locale, else Accept-Language), else English."""
    import streamlit as st

    try:
        lang = normalize(st.context.locale)
        if lang is None:
            lang = from_accept_language(st.context.headers.get("Accept-Language"))
    except Exception:  # no browser behind this run (a bare script run)
        lang = None
    return lang or "en"


def current() -> str:
    """This session's language: the user's choice once made, else the browser's."""
    import streamlit as st

    lang = st.session_state.get(LANG_KEY)
    if lang not in LANGS:
        lang = browser_language()
        st.session_state[LANG_KEY] = lang
    return lang


def set_current(lang: str) -> None:
    import streamlit as st

    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; use one of {', '.join(LANGS)}")
    st.session_state[LANG_KEY] = lang


def t(key: str, lang: str | None = None, **values: Any) -> str:
    """The text of ``key`` in ``lang`` (default: this session's), with ``values`` filled in.

    An unknown key shows as the key itself (and is logged), so a missing string is visible, not a crash.
    """
    texts = STRINGS.get(key)
    if texts is None:
        log.warning("no i18n text for %r", key)
        return key
    text = texts[lang or current()]
    return text.format(**values) if values else text


# ---- messages from the services ----
# Services raise KbError with an English message (the CLI and the API show the same one). The pages
# show the Chinese version of the ones users meet most; anything not listed is shown as written.
MESSAGES_ZH: list[tuple[re.Pattern[str], str]] = [(re.compile(p), zh) for p, zh in [
    (r"^Wrong user name or password\.$", "用户名或密码错误。"),
    (r"^Enter your user name and password\.$", "请输入用户名和密码。"),
    (r"^Too many failed attempts: this account is locked for (\d+) minutes\. .*$",
     r"失败次数过多：此账户已锁定 \1 分钟。管理员可通过重置密码解锁。"),
    (r"^Too many failed sign-ins from your address: try again in (\d+) minutes\. .*$",
     r"来自您地址的登录失败次数过多：请 \1 分钟后再试。管理员可在审计日志中查看这些尝试。"),
    (r"^Passwords need at least (\d+) characters\.$", r"密码至少需要 \1 个字符。"),
    (r"^This password is too easy to guess \((.*)\); choose a longer, less predictable one\.$",
     r"此密码太容易被猜到（\1），请选择更长、更难猜的密码。"),
    (r"^The current password is wrong\.$", "当前密码错误。"),
    (r"^Enter your current password and the new one\.$", "请输入当前密码和新密码。"),
    (r"^The new password is the same as the current one\. Choose another\.$", "新密码与当前密码相同，请另选一个。"),
    (r"^You are not signed in\.$", "您尚未登录。"),
]]


def message(text: str, lang: str | None = None) -> str:
    """A service's (English) message in the interface language, where a translation is known."""
    if (lang or current()) != "zh":
        return text
    for pattern, zh in MESSAGES_ZH:
        if pattern.match(text):
            return pattern.sub(zh, text)
    return text


# ---- numbers and dates, formatted for the language ----

def fmt_int(n: int | float | None, lang: str | None = None) -> str:
    """Thousands grouped: 12,345 in both languages (what Chinese business text uses too)."""
    if n is None:
        return ""
    return f"{int(round(n)):,}"


def fmt_num(x: float | None, digits: int = 1, lang: str | None = None) -> str:
    if x is None:
        return ""
    return f"{x:,.{digits}f}"


def fmt_date(d: date | datetime | None, lang: str | None = None) -> str:
    """2026-12-01 / 2026年12月1日."""
    if d is None:
        return ""
    if isinstance(d, datetime):
        d = d.astimezone() if d.tzinfo else d
    if (lang or current()) == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def fmt_datetime(ts: datetime | float | None, lang: str | None = None, seconds: bool = True) -> str:
    """A timestamp in local time: '2026-12-01 13:21:05' / '2026年12月1日 13:21:05'. Floats are epoch seconds."""
    if ts is None:
        return ""
    if isinstance(ts, int | float):
        ts = datetime.fromtimestamp(ts).astimezone()
    if not isinstance(ts, datetime):
        return str(ts)
    local = ts.astimezone() if ts.tzinfo else ts
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    return f"{fmt_date(local, lang)} {clock}"
