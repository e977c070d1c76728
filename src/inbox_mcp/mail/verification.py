"""One-time codes and verification links in a received message.

Agents sign up for things; the mail that comes back carries a code to type or a link to open.
There is no model here: every candidate is scored from the words around it (the sentence before
it, anchor text, the subject, the line above a code standing on its own) and from its own shape.
Shapes that are almost never codes are refused before any scoring: colours and invoice numbers
(``#``), prices, dates, times, versions, phone numbers and anything glued to a URL or address.
A link must carry something secret-looking (a token parameter, a long random path segment):
home pages, logos, help, terms and social links never do, which keeps them out for free.

Codes come back as printed ("QXJM-TDWR", "123 456"): that is what a human would read and type,
and a caller who wants digits only can strip the separators. Links come back as the mail
encodes them for following: HTML entities decoded (``&amp;`` → ``&``), nothing else changed.
Both lists are ordered best first and contain no duplicates.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import cached_property
from html import unescape as html_unescape
from html.parser import HTMLParser
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["Verification", "extract_verification"]


@dataclass(frozen=True)
class Verification:
    codes: list[str]
    links: list[str]


# Pathological bodies (megabytes of HTML, thousands of links) must not stall a tool call; real
# codes and links sit near the top of a message and number a handful.
_MAX_BODY_CHARS = 500_000
_MAX_CODE_SITES = 2_000
_MAX_LINK_SITES = 500

# --------------------------------------------------------------------------------------------
# Vocabulary. Kept to word stems so that a few languages fit without a stemmer.

_CODE_WORD = re.compile(
    r"\b(?:codes?|otp|passcode|pass code|one[-\s]?time(?:[-\s]pass(?:word|code))?|pin|2fa|mfa"
    r"|token|verification|c[oó]digo|codice|kode|koodi|kod|код"
    r"|(?:bestätigungs|sicherheits|anmelde|einmal|verifizierungs|verificatie|inlog"
    r"|beveiligings|login|bekräftelse|verifierings)code)\b",
    re.IGNORECASE,
)
# Words that, closer to a number than any code word, say what the number really is.
_NOT_CODE_WORD = re.compile(
    r"\b(?:orders?|invoice|receipt|bill(?:ing)?|booking|reservation|ref(?:erence)?|tracking"
    r"|confirmation (?:number|no|#)|card|ending(?: in)?"
    r"|shipment|parcel|package|account (?:no|number)|acct|customer|member(?:ship)?|ticket"
    r"|claim|policy|phone|tel|telephone|fax|mobile|cell|call|whatsapp|zip(?: ?code)?"
    r"|post ?code|postal(?: code)?|area code|suite|ste|apt|street|promo(?: ?code)?"
    r"|coupon(?: code)?|discount(?: code)?|voucher(?: code)?|gift(?: ?card| code)?"
    r"|referral(?: code)?|serial|model|sku|item|version|build|release|ip|id|no\.|nr\.|total"
    r"|amount|price|paid|balance)(?!\w)",
    re.IGNORECASE,
)
# Units and currencies say so only when they touch the number: "1234 EUR", "2026 years", but
# not "482915 - it expires in 15 minutes".
_UNITS = (
    r"(?:usd|eur|gbp|chf|jpy|cad|aud|inr|dollars?|euros?|years?|months?|weeks?|days?|hours?"
    r"|hrs?|minutes?|mins?|seconds?|secs?|px|kb|mb|gb|tb|street|st|ave(?:nue)?|road|rd|blvd"
    r"|lane|floor|unit|box)"
)
_UNIT_AFTER = re.compile(r" ?" + _UNITS + r"(?!\w)", re.IGNORECASE)
_UNIT_BEFORE = re.compile(r"\b" + _UNITS + r"\.? ?$", re.IGNORECASE)
# A line selling something: its codes are coupons.
_PROMOTION = re.compile(
    r"promo|coupon|discount|voucher|% off|\boff (?:your|all|everything)|checkout|\bsale\b"
    r"|gift card|referral",
    re.IGNORECASE,
)
# "Enter 3914 to verify": a verb directly before the code is as good as the word "code".
_CODE_VERB = re.compile(
    r"\b(?:enter|use|type|input|paste|copy|provide|submit|ingres[ae]|introduce|eingeben"
    r"|saisissez|inserisci|voer)\b\W*$",
    re.IGNORECASE,
)
_CODE_PURPOSE = re.compile(
    r"^\W*(?:to|para|pour|um|per|om)\s+(?:verify|confirm|sign\s?in|log\s?in|login|continue"
    r"|complete|reset|activate|authenticate|finish|proceed)",
    re.IGNORECASE,
)
_LINK_WORD = re.compile(
    r"verif|confirm|activat|reset|recover|passw|sign[-\s]?in|log[-\s]?in|magic|authenticat"
    r"|validat|bestätig|aktivier|zurücksetz|anmeld|vérifi|activer|réinitialis|mot de passe"
    r"|connecter|verificar|activar|restablecer|contraseña|iniciar sesi|conferm|attiva"
    r"|reimposta|accedi|bevestig|activeer|wachtwoord|inloggen|senha",
    re.IGNORECASE,
)
_LINK_ACTION = re.compile(
    r"\b(?:click|tap|press|follow|visit|go to|open)\b|button below|link below|following (?:link|"
    r"address|url)|copy and paste|paste (?:it|this|the)|klick|cliquez|haga clic|clicca|klik",
    re.IGNORECASE,
)
_LINK_PATH_WORD = re.compile(
    r"verif|confirm|activat|reset|recover|passw|magic|login|log-in|signin|sign-in|auth"
    r"|callback|token|lostpassword|invit|onboard|validat|otp",
    re.IGNORECASE,
)
# Links that are never the thing to click, judged on their URL, label and the words around them.
_LINK_NEGATIVE = re.compile(
    r"unsubscri|opt[-\s]?out|optout|privacy|\bterms\b|preferences|\bsupport\b|\bhelp\b|\bfaq\b"
    r"|\bcontact\b|view (?:it )?(?:in|this email in) (?:your )?browser|view online|web ?version"
    r"|abuse|manage (?:your )?(?:email|subscription|notification|settings)",
    re.IGNORECASE,
)
# The "it wasn't me" buttons of a security mail.
_LINK_REFUSAL = re.compile(
    r"\bnot[-_\s]?(?:me|you)\b|wasn.?t (?:me|you)|secure (?:your|my) account|review (?:this )?"
    r"activity|\breport\b|\bcancel\b|\brevoke\b|\bdeny\b|\bblock\b",
    re.IGNORECASE,
)
# Judged on the label only: this sentence often sits right next to a genuine link.
_LINK_DISOWN = re.compile(r"didn.?t request|did not request|didn.?t ask|did not ask", re.IGNORECASE)
# Mail about money or goods: its numbers are order, invoice and tracking numbers.
_TRANSACTIONAL = re.compile(
    r"\b(?:receipt|invoice|order|payment|paid|shipped|shipping|delivery|booking|reservation"
    r"|itinerary|subscription|renewal|statement)\b",
    re.IGNORECASE,
)

_URL = re.compile(r"""https?://[^\s<>"'\[\]{}|\\^`]+""", re.IGNORECASE)
# The lookbehind makes a match start only where a run starts: without it a long line with no
# "@" costs quadratic time.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TRAILING_PUNCT = ".,;:!?'\"*"

# A code candidate. The lookbehind refuses colours and numbers (#), prices, decimals, dates,
# times, versions and the tail of a phone or card number ("555 0100"); the lookahead refuses
# units, the head of a date, decimal or URL, and the head of a phone or card number.
# Digits are ASCII on purpose.
_CANDIDATE = re.compile(
    r"(?<![\w#$€£¥+\-/.,:@%&=])(?<![0-9][ -])"
    r"(?:(?P<grouped>[0-9]{3}[ -][0-9]{3}|[0-9]{4}[ -][0-9]{4})(?![ -]?[0-9])"
    r"|(?P<spaced>[0-9](?: [0-9]){3,9})(?! ?[0-9])"
    r"|(?P<dashed>[A-Z0-9]{3,5}(?:-[A-Z0-9]{3,5}){1,3})"
    r"|(?P<word>[A-Za-z0-9]{4,12}))"
    r"(?![\w@%&€$£]|[-/.,:][\w]|[ -][0-9])"
)
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")

# Letters-only and mixed-case tokens look like words and identifiers more often than numbers do.
_CODE_THRESHOLD = {
    "digits": 4, "grouped": 4, "spaced": 4, "upper": 4, "mixed": 5, "letters": 5, "lower": 5,
}
_LINK_THRESHOLD = 3
# Candidates far below the best one are usually the mail's other numbers or footer links.
_RELATIVE_CUT = 0.6
# How far a link's neighbours on its line still speak about it.
_NEAR_CHARS = 40
# Context windows are bounded so that a huge single-line body stays linear.
_LABEL_CHARS = 200
_CONTEXT_CHARS = 300
_MAX_OPEN_EMPHASIS = 64

# --------------------------------------------------------------------------------------------
# Documents: a body reduced to lines of visible text plus the links found in it.


@dataclass(frozen=True)
class _LinkSite:
    url: str
    label: str  # anchor text, or what precedes a bare URL on its line
    context: str  # the text a reader saw just before the link
    near: str  # a few words either side on the link's own line: "click here to unsubscribe"


@dataclass
class _Document:
    lines: list[str]
    links: list[_LinkSite]
    emphasized: set[str] = field(default_factory=set)


def _text_document(text: str) -> _Document:
    lines = [_clean(line) for line in text[:_MAX_BODY_CHARS].splitlines()]
    return _Document(lines=lines, links=_bare_links(lines, unescape_amp=True))


def _join_spelled_out(lines: list[str]) -> list[str]:
    """Codes drawn one character per table cell ("4", "8", "2", "9") become one line."""
    joined: list[str] = []
    run: list[str] = []
    for line in [*lines, "<end>"]:
        if not line:  # cells and paragraphs leave blank lines; nothing downstream needs them
            continue
        if len(line) == 1 and line.isalnum():
            run.append(line)
            continue
        joined.extend(["".join(run)] if len(run) >= 4 else run)
        run = []
        joined.append(line)
    return joined[:-1]


def _html_document(markup: str) -> _Document:
    flattener = _Flattener()
    flattener.feed(markup[:_MAX_BODY_CHARS])
    flattener.close()
    full = "".join(flattener.parts)
    lines = _join_spelled_out([_clean(line) for line in full.split("\n")])
    anchors = [_anchor_site(full, anchor) for anchor in flattener.anchors]
    return _Document(
        lines=lines,
        links=anchors + _bare_links(lines, unescape_amp=False),
        emphasized={_clean(full[start:end]) for start, end in flattener.emphasized},
    )


def _clean(text: str) -> str:
    text = re.sub(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]", "", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class _Anchor:
    url: str
    start: int
    end: int = -1
    extra_label: list[str] = field(default_factory=list)


_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "center", "dd", "div", "dl", "dt",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre",
    "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
_SKIP_TAGS = frozenset({"script", "style", "title", "noscript", "template"})
_EMPHASIS_TAGS = frozenset({
    "b", "strong", "h1", "h2", "h3", "code", "pre", "kbd", "samp", "tt", "big", "mark",
})
# Codes are usually shown large, bold, spaced out or monospaced.
_EMPHASIS_STYLE = re.compile(
    r"letter-spacing|monospace|font-weight\s*:\s*(?:bold|[6-9]00)"
    r"|font-size\s*:\s*(?:[2-9][0-9]|1[89])px",
    re.IGNORECASE,
)
_TAG_NAME = re.compile(r"<\s*[^\s/>]+")
_ATTRIBUTE = re.compile(r"""[\s/]*([^\s/>"'=][^\s/>"'=]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
_CHARREF = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")


class _Flattener(HTMLParser):
    """Visible text with block boundaries as newlines, plus anchors and emphasised spans."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.anchors: list[_Anchor] = []
        self.emphasized: list[tuple[int, int]] = []
        self._length = 0
        self._skip_depth = 0
        self._open_anchors: list[_Anchor] = []
        self._open_emphasis: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self._emit("\n")
        if tag == "a":
            self._open_anchor(attributes)
        elif tag == "img" and self._open_anchors:
            self._open_anchors[-1].extra_label.append(attributes.get("alt", ""))
        if tag in _EMPHASIS_TAGS or _EMPHASIS_STYLE.search(attributes.get("style", "")):
            self._open_emphasis.append((tag, self._length))
            del self._open_emphasis[:-_MAX_OPEN_EMPHASIS]  # never-closed tags must not pile up

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in {"img", "br", "hr", "meta", "link", "input"}:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self._emit("\n")
        if tag == "a" and self._open_anchors:
            anchor = self._open_anchors.pop()
            anchor.end = self._length
            self.anchors.append(anchor)
        for index in range(len(self._open_emphasis) - 1, -1, -1):
            if self._open_emphasis[index][0] == tag:
                self.emphasized.append((self._open_emphasis.pop(index)[1], self._length))
                break

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._emit(re.sub(r"\s+", " ", data))

    def close(self) -> None:
        super().close()
        for anchor in reversed(self._open_anchors):
            anchor.end = self._length
            self.anchors.append(anchor)
        self._open_anchors.clear()

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self._length += len(text)

    def _open_anchor(self, attributes: dict[str, str]) -> None:
        if "href" not in attributes:
            return
        url = _raw_href(self.get_starttag_text() or "") or attributes["href"]
        anchor = _Anchor(url=url.strip(), start=self._length)
        anchor.extra_label.append(attributes.get("title", ""))
        self._open_anchors.append(anchor)


def _raw_href(start_tag: str) -> str | None:
    """The href of a start tag the parser delimited, decoded the way a browser decodes it.

    html.parser turns "&param=2" in an href into "¶m=2"; browsers do not (HTML5 keeps legacy
    entities literal in attributes when "=" or an alphanumeric follows). So the raw value is
    re-read here, attribute by attribute so that quoted values are skipped, first one winning.
    """
    name = _TAG_NAME.match(start_tag)
    position = name.end() if name else len(start_tag)
    while (match := _ATTRIBUTE.match(start_tag, position)) and match.end() > position:
        position = match.end()
        if match.group(1).lower() == "href" and match.group(2) is not None:
            value = match.group(2)
            if value[:1] in {'"', "'"}:
                value = value[1:-1]
            return _CHARREF.sub(_decode_attribute_reference, value)
    return None


def _decode_attribute_reference(match: re.Match[str]) -> str:
    reference = match.group(0)
    following = match.string[match.end() : match.end() + 1]
    legacy = not reference.endswith(";") and not reference.startswith("&#")
    if legacy and (following == "=" or following.isalnum()):
        return reference
    return html_unescape(reference)


def _anchor_site(full: str, anchor: _Anchor) -> _LinkSite:
    text = full[anchor.start : min(anchor.end, anchor.start + _LABEL_CHARS)]
    label = _clean(" ".join([text, *anchor.extra_label]))
    before = full[max(0, anchor.start - _CONTEXT_CHARS) : anchor.start]
    after = full[anchor.end : anchor.end + _NEAR_CHARS]
    near = _near(before.rsplit("\n", 1)[-1], after.split("\n", 1)[0])
    return _LinkSite(url=anchor.url, label=_non_url(label), context=_clean(before), near=near)


def _near(before: str, after: str) -> str:
    return _clean(f"{before[-_NEAR_CHARS:]} {after[:_NEAR_CHARS]}")


def _bare_links(lines: list[str], *, unescape_amp: bool) -> list[_LinkSite]:
    sites = []
    for index, line in enumerate(lines):
        for match in _URL.finditer(line):
            url = _trim_url(match.group(0))
            if unescape_amp:
                url = url.replace("&amp;", "&")
            before = line[max(0, match.start() - _LABEL_CHARS) : match.start()]
            label = _non_url(before)
            previous = " ".join(_previous_lines(lines, index, 2))
            near = _non_url(_near(before, line[match.end() : match.end() + _NEAR_CHARS]))
            sites.append(_LinkSite(url=url, label=label, context=f"{previous} {label}", near=near))
    return sites


def _trim_url(url: str) -> str:
    while url:
        unbalanced = url[-1] == ")" and url.count("(") < url.count(")")
        if url[-1] not in _TRAILING_PUNCT and not unbalanced:
            return url
        url = url[:-1]
    return url


def _non_url(text: str) -> str:
    return _clean(_URL.sub(" ", text))


def _previous_lines(lines: list[str], index: int, count: int) -> list[str]:
    found: list[str] = []
    for position in range(index - 1, -1, -1):
        if len(found) == count:
            break
        if lines[position]:
            found.insert(0, lines[position])
    return found


# --------------------------------------------------------------------------------------------
# Intent of the whole message.


@dataclass(frozen=True)
class _Intent:
    codes: bool  # the mail talks about codes at all
    links_in_subject: bool
    transactional: bool  # receipts and orders, unless the subject itself is about a code

    @classmethod
    def of(cls, subject: str, documents: list[_Document]) -> _Intent:
        body = " ".join(line for document in documents for line in document.lines)
        return cls(
            codes=bool(_CODE_WORD.search(subject) or _CODE_WORD.search(body)),
            links_in_subject=bool(_LINK_WORD.search(subject)),
            transactional=bool(_TRANSACTIONAL.search(subject)) and not _CODE_WORD.search(subject),
        )


# --------------------------------------------------------------------------------------------
# Codes.


@dataclass(frozen=True)
class _Mail:
    subject: str
    intent: _Intent


@dataclass(frozen=True)
class _Scored:
    value: str
    key: str  # what makes two candidates the same answer
    score: float
    order: int  # position in the mail, to break ties in reading order


def _code_kind(match: re.Match[str]) -> str | None:
    if match.group("grouped"):
        return "grouped"
    if match.group("spaced"):
        return "spaced"
    if match.group("dashed"):
        token = match.group("dashed")
        if not re.search(r"[A-Z]", token):
            return None  # all-digit dashes are dates, ZIP+4 and phone numbers
        return "letters" if not re.search(r"[0-9]", token) else "upper"
    token = match.group("word")
    has_digit, has_alpha = bool(re.search(r"[0-9]", token)), bool(re.search(r"[A-Za-z]", token))
    if has_digit and not has_alpha:
        return "digits" if len(token) <= 10 else None
    if not (has_digit and has_alpha) or len(token) < 6:
        return None  # plain words, and short things like "2FA" or "v1.2"
    if not re.search(r"[a-z]", token):
        return "upper"
    if re.fullmatch(r"[A-Za-z]+[0-9]+", token):
        return None  # "JaneDoe42", "Summer2026": a name with a number, not a generated code
    return "mixed" if re.search(r"[A-Z]", token) else "lower"


@dataclass(frozen=True)
class _CodeSite:
    """One candidate where it was printed."""

    token: str
    kind: str
    line: str
    span: tuple[int, int]
    above: list[str]  # the two lines above, when the candidate stands alone on its line
    emphasized: bool

    @property
    def left(self) -> str:
        return self.line[max(0, self.span[0] - 60) : self.span[0]]

    @property
    def right(self) -> str:
        return self.line[self.span[1] : self.span[1] + 40]

    @property
    def sentence(self) -> str:
        return self.line[max(0, self.span[0] - 120) : self.span[1] + 120]

    @property
    def alone(self) -> bool:
        return _stands_alone(self.line, self.span)

    @cached_property
    def nearest_left(self) -> tuple[str, int] | None:
        return _closest_left(self.left)

    @cached_property
    def nearest_right(self) -> str | None:
        return _closest_right(self.right)


def _closest_left(left: str) -> tuple[str, int] | None:
    """The keyword nearest before a candidate: ("code" | "not" | "verb", distance)."""
    best: tuple[str, int] | None = None
    for kind, pattern in (("not", _NOT_CODE_WORD), ("code", _CODE_WORD)):
        for match in pattern.finditer(left):
            distance = len(left) - match.end()
            if best is None or distance < best[1]:
                best = (kind, distance)
    if _CODE_VERB.search(left[-16:]) and (best is None or best[1] > 3):
        best = ("verb", 0)
    return best


def _closest_right(right: str) -> str | None:
    """What follows a candidate: "not" if a unit or label touches it, "code" if it is named."""
    touching = right[1:] if right[:1] == " " else right
    if _UNIT_AFTER.match(right) or _NOT_CODE_WORD.match(touching):
        return "not"
    if _CODE_PURPOSE.search(right) or _CODE_WORD.search(right):
        return "code"
    return None


def _refused(site: _CodeSite) -> bool:
    """Context that says what the number is, when that is not a code."""
    return (
        (site.nearest_left is not None and site.nearest_left[0] == "not")
        or site.nearest_right == "not"
        or bool(_UNIT_BEFORE.search(site.left))
        or bool(_PROMOTION.search(site.sentence))
    )


def _evidence(site: _CodeSite, mail: _Mail) -> float:
    """Points for each sign that this is the code.

    Named just before it (+4, or +3 further back in the sentence) or after it (+3); a verb
    before it (+2); alone on its line (+1, +3 more if the line above names a code); emphasised,
    repeated in the subject, in a mail that talks about codes (+1 each). A year, or any number
    in a receipt, loses 3: those are the mail's own dates and order numbers.
    """
    nearest_left = site.nearest_left
    immediate = nearest_left is not None and nearest_left[1] <= 25
    score = 0.0
    if nearest_left and nearest_left[0] == "code":
        score += 4 if immediate else 3
    elif nearest_left and nearest_left[0] == "verb":
        score += 2
    if site.nearest_right == "code":
        score += 3
    if site.alone:
        score += 1 + _above_score(site.above)
    score += site.emphasized + (site.token in mail.subject) + mail.intent.codes
    is_year = site.kind == "digits" and bool(_YEAR.fullmatch(site.token))
    if is_year and not immediate:
        score -= 3
    if mail.intent.transactional:
        score -= 3
    return score


def _score_code(site: _CodeSite, mail: _Mail) -> float | None:
    return None if _refused(site) else _evidence(site, mail)


_WORD_CHAR = re.compile(r"\w")


def _stands_alone(line: str, span: tuple[int, int]) -> bool:
    # pos/endpos instead of slicing: a line with thousands of numbers must stay linear.
    return not _WORD_CHAR.search(line, 0, span[0]) and not _WORD_CHAR.search(line, span[1])


def _above_score(above: list[str]) -> int:
    # "Your code is listed below.\n\nQXJM-TDWR": the line above names what stands alone. Two
    # lines up counts for little: that is often "ignore this code" followed by a footer ZIP.
    for weight, line in zip((3, 1), reversed(above)):
        nearest = _closest_left(line + " ")
        if nearest and nearest[0] == "not":
            return 0
        if _CODE_WORD.search(line):
            return weight
    return 0


def _code_sites(lines: list[str], emphasized: set[str]) -> list[tuple[int, _CodeSite]]:
    sites: list[tuple[int, _CodeSite]] = []
    for index, raw_line in enumerate(lines):
        line = _EMAIL.sub(" ", _URL.sub(" ", raw_line))  # codes inside links are not shown
        for match in _CANDIDATE.finditer(line):
            if len(sites) >= _MAX_CODE_SITES:
                return sites
            kind = _code_kind(match)
            if kind is None:
                continue
            alone = _stands_alone(line, match.span())
            above = _previous_lines(lines, index, 2) if alone else []
            token = match.group(0)
            site = _CodeSite(token, kind, line, match.span(), above, token in emphasized)
            sites.append((index, site))
    return sites


def _code_candidates(
    lines: list[str], emphasized: set[str], mail: _Mail, offset: int
) -> list[_Scored]:
    found = []
    for index, site in _code_sites(lines, emphasized):
        score = _score_code(site, mail)
        if score is not None and score >= _CODE_THRESHOLD[site.kind]:
            key = re.sub(r"[\s-]", "", site.token)
            found.append(_Scored(site.token, key, score, offset + index))
    return found


# --------------------------------------------------------------------------------------------
# Links.

_SECRET_PARAM = re.compile(
    r"token|code|key|otp|hash|sig|signature|nonce|ticket|secret|verif|confirm|reset|magic|login"
    r"|auth|^t$|^k$",
    re.IGNORECASE,
)
_FILE_SUFFIX = re.compile(
    r"\.(?:png|jpe?g|gif|svg|webp|ico|css|js|pdf|woff2?|ttf|mp4|zip)$", re.IGNORECASE
)


def _looks_random(value: str) -> bool:
    """Long, charset-limited and hopping between letters and digits: a token, not a slug."""
    if len(value) < 16 or _FILE_SUFFIX.search(value):
        return False
    if not re.fullmatch(r"[A-Za-z0-9_\-.~:=+]+", value):
        return False
    classes = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in value if c.isalnum()]
    hops = sum(1 for a, b in itertools.pairwise(classes) if a != b)
    return hops >= 4 and any(c == "d" for c in classes) and any(c != "d" for c in classes)


def _carries_secret(url: str) -> bool:
    parts = urlsplit(url)
    fragment_path, _, fragment_query = parts.fragment.partition("?")
    params = parse_qsl(parts.query, keep_blank_values=True)
    params += parse_qsl(fragment_query, keep_blank_values=True)
    for name, value in params:
        if name.lower().startswith("utm_"):
            continue
        if _SECRET_PARAM.search(name) and _secret_value(value):
            return True
        if _looks_random(unquote(value)):
            return True
    segments = f"{parts.path}/{fragment_path}".split("/")
    return any(_looks_random(unquote(segment)) for segment in segments)


def _secret_value(value: str) -> bool:
    # "code=730261" and "key=Qw3r…" are secrets; "code=" and "key=en" are not.
    return len(value) >= 4 and (bool(re.search(r"[0-9]", value)) or len(value) >= 16)


def _url_words(url: str) -> str:
    # Path and parameter names only: parameter values are random and may spell anything.
    parts = urlsplit(url)
    fragment_path, _, fragment_query = parts.fragment.partition("?")
    names = [name for name, _ in parse_qsl(parts.query) + parse_qsl(fragment_query)]
    return " ".join([parts.path, fragment_path, *names])


def _score_link(site: _LinkSite, intent: _Intent) -> float | None:
    if not re.match(r"https?://", site.url, re.IGNORECASE) or not _carries_secret(site.url):
        return None
    surroundings = f"{site.label} {site.near} {_url_words(site.url)}"
    if _LINK_NEGATIVE.search(surroundings) or _LINK_REFUSAL.search(surroundings):
        return None
    if _LINK_DISOWN.search(site.label):
        return None
    score = 0.0
    if _LINK_WORD.search(site.label):
        score += 3
    if _LINK_PATH_WORD.search(_url_words(site.url)):
        score += 2
    recent = site.context[-250:]
    if _LINK_WORD.search(recent):
        score += 2
    if _LINK_ACTION.search(recent) or _LINK_ACTION.search(site.label):
        score += 1
    score += intent.links_in_subject
    return score


def _link_candidates(documents: list[_Document], intent: _Intent) -> list[_Scored]:
    found = []
    order = 0
    for document in documents:
        for site in document.links[:_MAX_LINK_SITES]:
            order += 1
            score = _score_link(site, intent)
            if score is not None and score >= _LINK_THRESHOLD:
                found.append(_Scored(site.url, site.url, score, order))
    return found


# --------------------------------------------------------------------------------------------
# Ranking and the public entry point.


def _rank(candidates: list[_Scored]) -> list[str]:
    best: dict[str, _Scored] = {}
    for candidate in candidates:
        kept = best.get(candidate.key)
        if kept is None or (candidate.score, -candidate.order) > (kept.score, -kept.order):
            best[candidate.key] = candidate
    if not best:
        return []
    top = max(candidate.score for candidate in best.values())
    ranked = sorted(best.values(), key=lambda c: (-c.score, c.order))
    return [candidate.value for candidate in ranked if candidate.score >= top * _RELATIVE_CUT]


def extract_verification(*, subject: str, text: str | None, html: str | None) -> Verification:
    """One-time codes and verification/confirmation/reset/magic-login links, best first.

    Either body may be missing. When both are given, both are read: a code or link found in
    the two parts counts once, with the better of its two scores.
    """
    documents = []
    if text:
        documents.append(_text_document(text))
    if html:
        documents.append(_html_document(html))
    subject = _clean(subject or "")
    mail = _Mail(subject=subject, intent=_Intent.of(subject, documents))
    codes = _code_candidates([subject], set(), mail, offset=0)
    for number, document in enumerate(documents, start=1):
        # Offsets keep reading order across parts: subject, then text, then HTML.
        codes += _code_candidates(document.lines, document.emphasized, mail, number * 10**7)
    links = _link_candidates(documents, mail.intent)
    return Verification(codes=_rank(codes), links=_rank(links))
