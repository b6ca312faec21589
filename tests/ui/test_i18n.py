"""Chinese and English: every string in both, the browser picks the default, the user's choice sticks."""

from __future__ import annotations

import ast
import string
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.services import qa, web_sessions
from tests.ui.conftest import COOKIES, app, titles
from ui import common, i18n
from ui.chat_turns import Source, Turn, export_markdown, from_dicts, to_dicts

UI = Path(__file__).resolve().parents[2] / "ui"


def _calls(name: str):
    """(file, call node) for every call of ``name`` / ``x.name`` in ui/."""
    for path in UI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                f = node.func
                if (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "") == name:
                    yield path.name, node


def literal_keys() -> set[tuple[str, str]]:
    """Every t("…") / i18n.t("…") with a literal key in ui/, with the file it is in."""
    return {(f, n.args[0].value) for f, n in _calls("t")
            if isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)}


def registered() -> dict[str, dict[str, str]]:
    """The tables page modules pass to i18n.register({...}) (read from the source: pages are scripts)."""
    out: dict[str, dict[str, str]] = {}
    for _, n in _calls("register"):
        if isinstance(n.args[0], ast.Dict):
            out.update(ast.literal_eval(n.args[0]))
    return out


def test_every_key_has_both_languages_and_every_used_key_exists():
    table = {**i18n.STRINGS, **registered()}
    for key, texts in table.items():
        assert set(texts) == set(i18n.LANGS), key
        assert all(texts[lang].strip() for lang in i18n.LANGS), key
        # the same placeholders in both, so no language fails to format
        fields = [{f for _, f, _, _ in string.Formatter().parse(texts[lang]) if f} for lang in i18n.LANGS]
        assert fields[0] == fields[1], key
    used = literal_keys()
    assert len(used) > 40
    missing = sorted((f, k) for f, k in used if k not in table)
    assert not missing, missing


def test_register_refuses_half_translated_or_conflicting_strings():
    with pytest.raises(ValueError, match="no text for zh"):
        i18n.register({"test.half": {"en": "Only English"}})
    with pytest.raises(ValueError, match="already defined"):
        i18n.register({"nav.chat": {"en": "Talk", "zh": "聊天"}})
    i18n.register({"nav.chat": dict(i18n.STRINGS["nav.chat"])})  # the same text again is fine


@pytest.mark.parametrize(("header", "lang"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("de-DE,zh-TW;q=0.5", "zh"),
    ("fr-FR", None), ("", None), ("zh;q=0,en;q=0.1", "en"),
])
def test_accept_language_picks_the_first_supported(header, lang):
    assert i18n.from_accept_language(header) == lang


def test_dates_and_numbers_follow_the_language():
    ts = datetime(2026, 3, 7, 9, 5, 2, tzinfo=UTC)
    assert i18n.fmt_date(ts.date(), "zh") == "2026年3月7日"
    assert i18n.fmt_date(ts.date(), "en") == "2026-03-07"
    assert i18n.fmt_datetime(ts, "zh").startswith("2026年3月")
    assert i18n.fmt_int(1234567) == "1,234,567" and i18n.fmt_num(1234.56, 1) == "1,234.6"


def test_a_chinese_browser_sees_the_chinese_sign_in_page(kb):
    at = app()
    at.context = {"locale": "zh-CN"}
    at.run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["用户名", "密码"]
    assert [b.label for b in at.button if b.label == "登录"] == ["登录"]


def test_signed_in_pages_follow_the_language_and_the_user_choice_sticks(kb):
    at = app(user="admin")
    at.context = {"locale": "zh-CN"}
    at.run()
    assert not at.exception
    assert "我的账户" in titles(at)  # the first admin lands on My account, in Chinese
    at.switch_page("views/documents.py").run()
    assert not at.exception
    web_sessions.set_language(kb, COOKIES[common.COOKIE], "en")
    fresh = app(user="admin")  # another browser of the same user, still a Chinese browser
    fresh.context = {"locale": "zh-CN"}
    fresh.run()
    assert "My account" in titles(fresh)


def test_too_long_question_is_refused_with_a_message_and_kept(kb):
    at = app(user="sam").run()
    long = "x" * (qa.MAX_QUESTION_CHARS + 250)
    at.chat_input[0].set_value(long).run()
    assert not at.exception
    assert [e.value for e in at.error][0].startswith("Your question is 4,250 characters long; the limit is 4,000")
    assert at.text_area[0].value == long
    assert len(at.chat_message) == 0


def test_conversation_round_trips_and_exports_with_its_citations():
    turns = [Turn("What is the notice period?", "Three months [1].", sources=[
        Source(1, "hr/handbook.docx", "Handbook", "handbook", "p. 4", "Notice period: three months.", True),
        Source(2, "hr/other.docx", "Other", "handbook", "", "Unrelated.", False)], searched="notice period"),
        Turn("And for managers?", error="The answer ended unexpectedly; please ask again.")]
    assert from_dicts(to_dicts(turns)) == turns
    md = export_markdown(turns, "sam", "en", now=datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    assert md.startswith("# Conversation\n")
    assert "## 1. Question\n\nWhat is the notice period?" in md and "Three months [1]." in md
    assert "[1] **Handbook** — hr/handbook.docx · collection handbook · p. 4" in md
    assert "> Notice period: three months." in md
    assert "Unrelated." not in md  # only cited passages
    assert "Not answered: The answer ended unexpectedly" in md
    zh = export_markdown(turns, "sam", "zh", now=datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    assert zh.startswith("# 对话记录\n") and "## 1. 问题" in zh and "### 来源" in zh


def test_service_messages_are_shown_in_chinese_where_known(kb):
    from app.services.session import GENERIC_FAILURE

    assert i18n.message(GENERIC_FAILURE, "zh") == "用户名或密码错误。"
    assert i18n.message(GENERIC_FAILURE, "en") == GENERIC_FAILURE
    assert i18n.message("Something new happened.", "zh") == "Something new happened."  # shown as written
    at = app()
    at.context = {"locale": "zh-CN"}
    at.run()
    at.text_input(key="login_name").input("sam")
    at.text_input(key="login_password").input("wrong-password-0")
    next(b for b in at.button if b.label == "登录").click()
    at.run()
    assert [e.value for e in at.error] == ["用户名或密码错误。"]
