"""html_to_text readability and sanitize_html safety, on hand-made HTML and on every HTML body
in the corpora."""

from __future__ import annotations

import re

import pytest

from inbox_mcp.mail.html_text import html_to_text, sanitize_html
from inbox_mcp.mail.parse import parse_message
from tests.corpora import all_corpus_files, corpus_dir


def test_scripts_styles_and_head_are_dropped():
    html = """<html><head><title>Title text</title><style>p { color: red }</style></head>
    <body><p>Visible</p><script>alert('x')</script><style>.x{}</style></body></html>"""
    assert html_to_text(html) == "Visible"


def test_links_keep_their_url():
    text = html_to_text('<p>Please <a href="https://example.com/confirm?t=abc123">confirm</a> or '
                        '<a href="https://example.com/raw">https://example.com/raw</a>.</p>')
    assert "[confirm](https://example.com/confirm?t=abc123)" in text
    assert "https://example.com/raw" in text and "<https://" not in text


def test_images_become_alt_text_never_urls():
    text = html_to_text('<p>Logo:<img src="https://track.example/p.gif" alt="ACME">'
                        '<img src="https://track.example/q.gif"></p>')
    assert "ACME" in text
    assert "track.example" not in text


def test_no_wrapping_and_blank_lines_collapsed():
    long_line = "word " * 60
    text = html_to_text(f"<p>{long_line}</p><br><br><br><br><br><p>next</p>")
    assert long_line.strip() in text  # one line, never hard-wrapped
    assert "\n\n\n" not in text
    assert text.endswith("next")


def test_tables_keep_cells_apart():
    text = html_to_text("<table><tr><td>Code</td><td>482913</td></tr><tr><td>Expires</td><td>10 min</td></tr></table>")
    assert "Code 482913" in text and "Expires 10 min" in text


def test_entities_nbsp_and_invisible_characters():
    text = html_to_text("<p>caf&eacute;&nbsp;&amp;&nbsp;th\u200be &lt;b&gt;\u034f\u200c</p>")
    assert text == "café & the <b>"


def test_signature_and_outlook_separators_are_not_escaped():
    text = html_to_text("<p>Thanks</p><p>-- <br>Bob</p><p>-----Original Message-----</p><p>1. first</p><p>+ plus</p>")
    assert "\\-" not in text and "\\+" not in text and "1\\." not in text
    assert "-----Original Message-----" in text
    assert re.search(r"^--$", text, re.MULTILINE)


@pytest.mark.parametrize("html", ["", "   ", "<p></p>", "<", "<<<>>>", "<div" * 500, "\x00\ud800"])
def test_odd_input_never_raises(html):
    assert isinstance(html_to_text(html), str)
    assert isinstance(sanitize_html(html), str)


def test_talon_html_replies_render_their_text():
    for path in sorted((corpus_dir("talon") / "html_replies").glob("*.html")):
        text = html_to_text(path.read_text(encoding="utf-8", errors="replace"))
        assert "Hi. I am fine." in text, path.name
        assert "<" not in text.split("Hi. I am fine.")[0], path.name


def test_sanitize_removes_active_content():
    dirty = """<div onclick="steal()" style="color: red; background-image: url(https://t.example/x)">
      <script>alert(1)</script><iframe src="https://evil.example"></iframe>
      <img src="https://t.example/pixel.gif" onerror="x()"><img src="cid:logo@x" alt="logo">
      <img src="data:image/png;base64,iVBORw0KGgo=" alt="inline"><img src="data:image/svg+xml;base64,PHN2Zz4=">
      <a href="javascript:alert(1)">js</a><a href="data:text/html,<script>x</script>">data</a>
      <a href="https://example.com/ok" target="_top">ok</a><form action="https://evil.example"><input name=p></form>
      <object data="x.swf"></object><svg onload="x()"><circle/></svg><p style="position: fixed">text</p></div>"""
    clean = sanitize_html(dirty)
    lowered = clean.lower()
    for banned in ["<script", "alert(", "<iframe", "onerror", "onclick", "onload", "javascript:", "data:text",
                   "t.example", "url(", "<form", "<input", "<object", "<svg", "position"]:
        assert banned not in lowered, banned
    assert 'src="cid:logo@x"' in clean
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in clean
    assert "svg+xml" not in clean
    assert 'href="https://example.com/ok"' in clean
    assert 'rel="noopener noreferrer nofollow"' in clean
    assert "color:red" in clean.replace(" ", "")
    assert ">text<" in clean


def test_sanitize_on_every_corpus_html_body():
    checked = 0
    for path in all_corpus_files():
        html = parse_message(path.read_bytes()).html
        if not html:
            continue
        checked += 1
        clean = sanitize_html(html).lower()
        assert "<script" not in clean, path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", clean), path
        assert not re.search(r"<img[^>]+src=\"(https?:|//)", clean), path
        assert "javascript:" not in clean, path
        for href in re.findall(r"<a\b[^>]*>", clean):
            if "href=" in href:
                assert 'rel="noopener noreferrer nofollow"' in href, path
    assert checked >= 30
