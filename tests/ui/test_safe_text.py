"""Untrusted text becomes inert Markdown: rendered by a CommonMark+GFM renderer it has no tag, link or image."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from ui.safe_text import highlighted, safe_label, safe_markdown

# CommonMark with GFM tables and strikethrough, raw HTML allowed: what an unsanitized renderer does.
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
HARMLESS_TAGS = {"p", "strong", "em", "ul", "ol", "li", "br", "hr", "blockquote", "code", "pre", "s",
                 "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}

ATTACKS = [
    "<script>alert(1)</script>",
    '<img src="x" onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](  javascript:alert(1) 'title')",
    "![pixel](https://tracker.example/p.png)",
    "![pixel][ref]\n\n[ref]: https://tracker.example/p.png",
    "[x][evil]\n\n[evil]: javascript:alert(1)",
    "<https://example.com>",
    "<a href='javascript:alert(1)'>x</a>",
    "<iframe src=//evil></iframe>",
    "\\[x](javascript:alert(1))",  # a backslash must not undo the escaping
    "\\\\[x](javascript:alert(1))",
    ":red[colour] and :material/warning: and $x^2$",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<svg/onload=alert(1)>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
]


def render(md: str) -> str:
    return MD.render(md)


def live_tags(html: str) -> list[str]:
    """Tags that are not plain formatting, or that carry any attribute (href, src, on*...)."""
    return [m.group(0) for m in re.finditer(r"<(/?)([a-zA-Z][\w-]*)([^>]*)>", html)
            if m.group(2).lower() not in HARMLESS_TAGS or m.group(3).strip()]


def test_the_renderer_would_run_the_attacks_unescaped():
    """Guards the test itself: without safe_markdown the tag, image and autolink attacks produce live HTML.
    (This renderer drops javascript: links by itself; safe_markdown must not rely on any renderer doing so.)"""
    live = [a for a in ATTACKS if live_tags(render(a))]
    assert len(live) >= 7, live


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_render_without_tags_links_or_images(attack):
    html = render(safe_markdown(attack))
    assert live_tags(html) == [], html


@pytest.mark.parametrize("attack", ATTACKS[:4])
def test_the_text_reads_as_written(attack):
    """Escaped, not deleted: an auditor must see what the document or model actually said."""
    html = render(safe_markdown(attack))
    text = re.sub(r"<[^>]+>", "", html)  # the renderer's own tags (<p>)
    import html as htmlmod

    assert htmlmod.unescape(text).strip().replace("\u2060", "") == attack  # plus invisible joiners


# What GFM's autolink-literal extension turns into links (it runs on text after escapes are resolved).
GFM_AUTOLINK = re.compile(r"(?i)(https?://|ftp://|www\.|mailto:|xmpp:)|[-.+\w]+@[-\w]+(\.[-\w]+)+")


@pytest.mark.parametrize("text", ["see https://example.com/a", "www.example.com", "mail bob@example.com",
                                  "x_https://evil.example", "mailto:bob@example.com", "(http://a.b)"])
def test_bare_urls_and_addresses_are_not_autolinked(text):
    assert GFM_AUTOLINK.search(text)
    out = safe_markdown(text)
    assert not GFM_AUTOLINK.search(out), out
    assert out.replace("\u2060", "").replace("\\", "") == text  # only invisible joiners were added


def test_ordinary_markdown_still_formats_and_citations_stay_readable():
    html = render(safe_markdown("**Bold** claim [1], see also [2].\n\n- one\n- two"))
    assert "<strong>Bold</strong>" in html and "<li>one</li>" in html
    assert "claim [1], see also [2]." in html


def test_labels_are_one_bounded_line():
    label = safe_label("a\nb\t[x](javascript:y)" + "z" * 300, limit=50)
    assert "\n" not in label and len(label) < 80
    assert label.endswith("…")
    assert "<a" not in render(label)


def test_highlight_wraps_only_the_span_and_stays_inert():
    text = "First sentence. The <script>x</script> part [1](javascript:y). Last."
    start = text.index("The")
    end = text.index("Last") - 1
    out = highlighted(text, (start, end))
    assert out.count(":orange-background[") == 1
    inner = out.split(":orange-background[", 1)[1]
    assert "&lt;script&gt;" in inner and "\\[1\\]" in inner
    assert "<script" not in render(out) and "<a" not in render(out)
    assert highlighted("plain", None) == "plain"
