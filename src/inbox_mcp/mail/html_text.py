"""HTML mail bodies: readable text for agents (html2text) and a safe HTML subset (nh3).

Inbound HTML is untrusted. ``html_to_text`` is what agents usually read; ``sanitize_html`` is
what the console renders. Neither ever fetches anything.
"""

from __future__ import annotations

import html as html_lib
import re

import html2text
import nh3

# Characters that marketing mail pads preheaders with, or that break word matching for no
# visible gain (zero-width joiners, soft hyphens, the combining grapheme joiner).
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u2060-\u2064\ufeff]")
_NBSP = re.compile("[\u00a0\u2007\u202f]")
_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
# html2text escapes line-leading "-", "+" and "1." so that its output stays valid markdown.
# Our readers are agents and the reply-text extractor, which must see "-- " and
# "-----Original Message-----" as written.
# ([ \t]*, not \s*: \s would run across newlines and make these quadratic on blank-line runs.)
_ESCAPED_LINE_START = re.compile(r"^([ \t]*)\\([-+])", re.MULTILINE)
_ESCAPED_NUMBER_DOT = re.compile(r"^([ \t]*\d+)\\\.", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
# Tags whose content is never readable text.
_NON_CONTENT_TAGS = {"script", "style", "title", "head", "template", "noscript", "xmp", "iframe", "object"}
_SAFE_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}


# Hostile-input limits. html5ever (inside nh3) checks element scope on every block tag, which
# costs time proportional to the nesting depth; html2text is pure Python at ~7 µs per char.
# Real mail nests a few dozen levels deep and is far smaller than these limits.
_MAX_DEPTH = 300
_MAX_HTML = 2_000_000  # chars given to nh3
_MAX_HTML2TEXT = 300_000  # chars of cleaned HTML given to html2text
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]{0,40})[^<>]{0,2000}>")
# Elements that never nest: void elements, and those whose end tag is implied by the next one.
_FLAT_TAGS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "p", "li", "td", "th", "tr", "option", "dt", "dd",
}
_BLOCK_TAGS = {
    "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre",
    "ul", "ol", "hr", "section", "article", "header", "footer",
}


def _too_deep(html: str) -> bool:
    depth = 0
    for m in _TAG.finditer(html):
        if m.group(2).lower() in _FLAT_TAGS:
            continue
        depth = max(0, depth - 1) if m.group(1) else depth + 1
        if depth > _MAX_DEPTH:
            return True
    return False


def _crude_text(html: str) -> str:
    """Linear-time text extraction for input too big or too deep for the real converters."""
    out: list[str] = []
    pos, skipping = 0, None
    for m in _TAG.finditer(html):
        name, closing = m.group(2).lower(), bool(m.group(1))
        if skipping is None:
            out.append(html[pos : m.start()])
            if not closing and name in _NON_CONTENT_TAGS:
                skipping = name
            elif name in _BLOCK_TAGS:
                out.append("\n")
        elif closing and name == skipping:
            skipping = None
        pos = m.end()
    if skipping is None:
        out.append(html[pos:])
    text = html_lib.unescape("".join(out))
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def _valid_unicode(text: str) -> str:
    # Lone surrogates (from a broken decoder upstream) make nh3 raise; "?" is harmless.
    return text.encode("utf-8", "replace").decode("utf-8")


def _tag_callback(parser: html2text.HTML2Text, tag: str, attrs: dict, start: bool) -> bool:
    # Layout tables are everywhere in HTML mail; rendered as markdown tables they are noise,
    # and with tables ignored html2text glues neighbouring cells together ("NameValue").
    if tag in ("td", "th") and not start:
        parser.o(" ")
        return True
    # The alt text of an image is content, but html2text glues it to the words around it.
    # The image URL is never kept: it is usually a tracking pixel.
    if tag == "img":
        alt = (attrs.get("alt") or "").strip()
        if start and alt:
            parser.o(f" {alt} ")
        return True
    return False


def _converter() -> html2text.HTML2Text:
    h = html2text.HTML2Text()
    h.body_width = 0  # never hard-wrap: wrapping breaks long links and codes
    h.unicode_snob = True  # keep "é" rather than transliterating to "e"
    h.ignore_emphasis = True
    h.ignore_tables = True
    h.ignore_images = False
    h.images_to_alt = True  # an image's alt text is content; its URL is a tracking risk
    h.default_image_alt = ""
    h.inline_links = True  # "[text](url)": the url stays next to its text
    h.protect_links = False
    h.wrap_links = False
    h.mark_code = False
    h.tag_callback = _tag_callback
    return h


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body; "" for empty input. Never raises on odd HTML."""
    if not html or not html.strip():
        return ""
    html = _valid_unicode(html)
    try:
        if len(html) > _MAX_HTML or _too_deep(html):
            raise ValueError("HTML too large or too deeply nested for the full converter")
        # A browser-grade parser (html5ever, in nh3) first: it drops scripts, styles and the
        # head with their content and repairs broken markup, so html2text only ever sees
        # well-formed, content-only HTML.
        cleaned = nh3.clean(
            html,
            tags=_SAFE_TAGS,
            clean_content_tags=_NON_CONTENT_TAGS,
            attributes={"a": {"href"}, "img": {"alt"}, "ol": {"start"}},
            link_rel=None,
        )
        text = _converter().handle(cleaned) if len(cleaned) <= _MAX_HTML2TEXT else _crude_text(cleaned)
    except Exception:  # noqa: BLE001
        # Hostile or odd input: a crude tag strip still gives readable text, in linear time.
        text = _crude_text(html)
    text = _INVISIBLE.sub("", text)
    text = _NBSP.sub(" ", text)
    text = _ESCAPED_LINE_START.sub(r"\1\2", text)
    text = _ESCAPED_NUMBER_DOT.sub(r"\1.", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _TRAILING_WS.sub("", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


_SAFE_ATTRIBUTES: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_SAFE_ATTRIBUTES.setdefault("*", set()).update({"align", "valign", "dir", "lang", "title", "style", "width", "height"})
for _tag, _extra in {
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "width"},
    "td": {"bgcolor", "width", "nowrap"},
    "th": {"bgcolor", "width", "nowrap"},
    "tr": {"bgcolor"},
    "font": {"color", "face", "size"},
    "img": {"src", "alt", "width", "height"},
}.items():
    _SAFE_ATTRIBUTES.setdefault(_tag, set()).update(_extra)

# Only properties that cannot carry a URL (no background / background-image / content /
# list-style-image / cursor), so inline CSS cannot load remote resources or track opens.
_SAFE_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "line-height", "letter-spacing", "text-align", "text-decoration", "text-transform",
    "vertical-align", "white-space", "word-break", "direction",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-radius",
    "width", "max-width", "min-width", "height", "max-height", "min-height", "display",
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}
_SAFE_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpe?g|webp|bmp);", re.IGNORECASE)


def _filter_attribute(tag: str, attr: str, value: str) -> str | None:
    lowered = value.strip().lower()
    if tag == "img" and attr == "src":
        # Remote images are tracking pixels until proven otherwise: keep only images that
        # travel inside the message (cid:) or inside the attribute itself (raster data:).
        if lowered.startswith("cid:") or _SAFE_DATA_IMAGE.match(lowered):
            return value
        return None
    if lowered.startswith("data:") or lowered.startswith("cid:"):
        return None  # data: links can carry HTML documents; cid: only makes sense on <img>
    return value


def sanitize_html(html: str) -> str:
    """HTML safe to render: allowlisted tags and attributes, no scripts or event handlers, no
    remote images or CSS URLs, links marked rel="noopener noreferrer nofollow"."""
    if not html:
        return ""
    html = _valid_unicode(html)
    if len(html) > _MAX_HTML or _too_deep(html):
        # Too costly to parse safely: show its text instead, which needs no sanitising.
        return f"<pre>{html_lib.escape(_crude_text(html))}</pre>"
    try:
        return nh3.clean(
            html,
            tags=_SAFE_TAGS,
            clean_content_tags=_NON_CONTENT_TAGS,
            attributes=_SAFE_ATTRIBUTES,
            attribute_filter=_filter_attribute,
            link_rel="noopener noreferrer nofollow",
            url_schemes=_URL_SCHEMES,
            filter_style_properties=_SAFE_STYLE_PROPERTIES,
            strip_comments=True,
        )
    except Exception:  # noqa: BLE001
        # Should nh3 ever reject an input, escaping everything is always safe to render.
        return html_lib.escape(html)
