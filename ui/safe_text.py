"""Turn untrusted text (model output, document passages, file and user names) into inert Markdown.

Streamlit renders Markdown for st.markdown and for widget labels. Text from a model or a document
must never become HTML, a link (``javascript:`` or otherwise), an image that fetches a remote
URL, or a Streamlit directive. Escaping does all of it at once:

* ``& < >`` become entities, so no tag or autolink (``<http://...>``) survives;
* ``[`` ``]`` are backslash-escaped, so no inline, reference or image link can form, and no
  ``:color[...]`` directive either (citation markers still read ``[1]``);
* ``$`` is escaped so prices do not turn into LaTeX; a backslash is escaped first so the text
  cannot undo the other escapes.

Plain URLs and e-mail addresses stay text. GFM autolinks them after escapes are resolved, so
escaping cannot stop it; an invisible word joiner (U+2060) after ``www``, before a scheme's colon
and after ``@`` does, and nothing becomes clickable.
Emphasis, lists and headings keep working, which is what makes answers readable.
"""

from __future__ import annotations

import re

_ESCAPES = {"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "$": "\\$",
            "`": "\\`"}
_SPECIAL = re.compile(r"[\\&<>\[\]$`]")
_SCHEME = re.compile(r"([A-Za-z]):(?=\S)")  # any scheme: the joiner goes right before its colon
_WWW = re.compile(r"(www)(?=\.)", re.IGNORECASE)
_AT = re.compile(r"@(?=[-\w])")
JOINER = "\u2060"  # WORD JOINER: invisible, and no line break


def _defuse_urls(text: str) -> str:
    text = _SCHEME.sub(lambda m: f"{m.group(1)}{JOINER}:", text)
    text = _WWW.sub(lambda m: m.group(1) + JOINER, text)
    return _AT.sub("@" + JOINER, text)


def safe_markdown(text: str | None) -> str:
    """Markdown that shows ``text`` as written, with no HTML, links, images or directives."""
    if not text:
        return ""
    return _defuse_urls(_SPECIAL.sub(lambda m: _ESCAPES[m.group(0)], str(text)))


def safe_label(text: str | None, limit: int = 120) -> str:
    """One line of inert Markdown for widget labels (expanders, buttons): no newlines, bounded."""
    one_line = " ".join(str(text or "").split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return safe_markdown(one_line)


def highlighted(text: str, span: tuple[int, int] | None) -> str:
    """Inert Markdown of ``text`` with ``text[span]`` on a highlighted background."""
    if not span:
        return safe_markdown(text)
    start, end = span
    inner = " ".join(text[start:end].split())
    if not inner:
        return safe_markdown(text)
    return f"{safe_markdown(text[:start])}:orange-background[{safe_markdown(inner)}]{safe_markdown(text[end:])}"
