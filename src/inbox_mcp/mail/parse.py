"""Inbound messages: raw bytes to the fields agents read. ``parse_message`` never raises.

Inbound mail is hostile or broken often enough that a parse failure must never lose a message:
the store keeps the raw bytes, and this module always returns *something* readable, recording
what went wrong in ``defects``.

mail-parser does the parsing (it wraps the stdlib parser and adds hardened address and date
handling). The MIME walk that sorts parts into body text and attachments is our own, because
we need what mail-parser does not give: exact attachment bytes for every encoding, forwarded
messages kept whole as attachments (mail-parser merges their text into the body), content ids
for inline images, and charset recovery that never drops text.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import email.utils
import logging
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime, UTC
from email.generator import BytesGenerator
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO
from typing import Any, TypeVar
from collections.abc import Callable

import mailparser

from inbox_mcp.mail.html_text import html_to_text

# mail-parser logs every sender mistake it meets (at WARNING/ERROR), once per message; we
# report those as ParsedMessage.defects instead of flooding the server log with spam's flaws.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)


@dataclass
class ParsedAttachment:
    filename: str  # never empty: "attachment-N.<ext>" when the message names none
    content_type: str
    data: bytes
    content_id: str | None  # without angle brackets, as HTML refers to it ("cid:<this>")
    inline: bool


@dataclass
class ParsedMessage:
    message_id: str | None  # "<id@host>", brackets included; None if absent
    in_reply_to: str | None  # first msg-id of In-Reply-To
    references: list[str]  # msg-ids of References, in order, brackets included
    subject: str  # decoded; "" if absent
    from_addr: str | None  # domain lowercased
    from_name: str | None
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    date: datetime | None  # aware, UTC
    text: str  # the text/plain parts, else the HTML rendered as text, else ""
    html: str | None  # raw, unsanitised: sanitise on output
    attachments: list[ParsedAttachment]
    auto_submitted: bool  # Auto-Submitted other than "no", or Precedence bulk/list/junk
    headers: dict[str, str]  # every top-level header, lowercase name, last value wins
    defects: list[str] = field(default_factory=list)
    parse_ok: bool = True  # False when mail-parser failed and a fallback produced this


_MSG_ID = re.compile(r"<[^<>\s]+>")
_SURROGATES = re.compile("[\ud800-\udfff]")
_FOLD = re.compile(r"\r?\n[ \t]*")
_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_MIME_HEADERS = ("content-type", "content-disposition", "content-id", "content-transfer-encoding")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
# A line that looks like a MIME delimiter ("--boundary" or "--boundary--").
_BOUNDARY_LINE = re.compile(r"^--([^\s\"\\]{6,200}?)(?:--)?[ \t]*\r?$", re.MULTILINE)
_MAX_DEPTH = 40  # deeper MIME nesting is an attack, not mail
_MAX_DEFECTS = 50

# Labels mail carries that Python does not know, or whose real-world use is a superset of
# the label (WHATWG Encoding Standard does the same mapping in browsers).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}

T = TypeVar("T")


class _Defects(list):
    def add(self, message: str) -> None:
        if len(self) < _MAX_DEFECTS and message not in self:
            self.append(message)


def _clean(value: str) -> str:
    """Valid Unicode without NUL: what JSON, SQLite and PostgreSQL text all accept."""
    if _SURROGATES.search(value):
        # Raw 8-bit bytes arrive from the stdlib parser as surrogate escapes.
        try:
            value, _ = _decode_bytes(value.encode("utf-8", "surrogateescape"), None)
        except UnicodeEncodeError:
            pass  # a lone surrogate that is no escaped byte (e.g. from UTF-7): replaced below
        value = _SURROGATES.sub("\ufffd", value)
    return value.replace("\x00", "")


def _codec(declared: str | None) -> str | None:
    """A Python codec name for a declared charset, or None if there is none we know."""
    label = (declared or "").strip().strip("\"'").lower()
    if label.startswith("charset="):  # seen in the wild: charset="charset=us-ascii"
        label = label[8:].strip("\"'")
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    # "base64", "zlib", "rot13"... are codecs too, but not text encodings; "undefined" always fails.
    if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
        return None
    return info.name


def _decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Text from bytes in a declared charset, and a description of any trouble (else None).

    The declared charset first; then UTF-8, because mislabelled mail (us-ascii, or no label,
    on UTF-8 bytes) is common. Failing both, a declared real charset is decoded with
    replacement characters (a few bad bytes should not turn the whole text into mojibake);
    with no usable label, mostly-UTF-8 stays UTF-8 and anything else is read as
    windows-1252, the usual truth behind an "ascii" label on 8-bit text.
    """
    codec = _codec(declared)
    for candidate in dict.fromkeys(c for c in (codec, "utf-8") if c):
        try:
            return data.decode(candidate), None
        except (UnicodeDecodeError, LookupError):
            continue
    label = declared or "no charset"
    if codec and codec != "ascii":
        try:
            return data.decode(codec, "replace"), f"bytes not valid in {label!r} replaced"
        except Exception:  # noqa: BLE001 - a codec that fails even with errors="replace"
            pass
    problem = f"unknown charset {label!r}" if declared and not codec else f"bytes not valid in {label!r}"
    as_utf8 = data.decode("utf-8", "replace")
    bad = as_utf8.count("\ufffd")
    good = sum(1 for c in as_utf8 if ord(c) > 0x7F) - bad
    if good > 4 * bad:  # UTF-8 with a stray byte or two
        return as_utf8, f"{problem}; decoded as utf-8 with replacements"
    return data.decode("cp1252", "replace"), f"{problem}; decoded as windows-1252"


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words, tolerating the wrong or unknown charsets mail uses."""
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except Exception:  # noqa: BLE001 - a malformed encoded word stays literal
        return text
    out = []
    for chunk, charset in chunks:
        out.append(_decode_bytes(chunk, charset)[0] if isinstance(chunk, bytes) else chunk)
    return "".join(out)


def _header_str(value: Any) -> str:
    """A raw header value as readable text: unfolded, 8-bit bytes recovered, encoded words
    decoded."""
    if value is None:
        return ""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001
        return ""
    text = _clean(_FOLD.sub(" ", text))
    return _clean(_decode_words(text)).strip()


def _attempt(defects: _Defects, what: str, default: T, *getters: Callable[[], T]) -> T:
    """The first getter's result that does not raise; ``default`` (and a defect) if none."""
    for getter in getters:
        try:
            return getter()
        except Exception as exc:  # noqa: BLE001 - by contract nothing escapes parse_message
            defects.add(f"{what}: {type(exc).__name__}: {exc}"[:300])
    return default


def _msg_ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if not found and value.strip() and not any(c.isspace() for c in value.strip()):
        found = [f"<{value.strip()}>"]  # some clients drop the brackets
    return list(dict.fromkeys(found))


def _normalize_addr(addr: str) -> str | None:
    addr = _clean(addr or "").strip().strip("<>").strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        return None
    return f"{local}@{domain.lower()}"


def _addresses_from_mailparser(mp: Any, name: str) -> list[tuple[str, str]]:
    # mail-parser's documented accessors: mail.from_, mail.to, mail.cc, mail.reply_to
    value = getattr(mp, name.replace("-", "_") + "_")
    if not isinstance(value, list):
        return []
    return [(str(n or ""), str(a or "")) for n, a in value]


def _bare(pairs: list[tuple[str, str]]) -> list[str]:
    out = [a for a in (_normalize_addr(addr) for _, addr in pairs) if a]
    return list(dict.fromkeys(out))


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = parsedate_to_datetime(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # RFC 5322 "-0000": zone unknown
    return parsed.astimezone(UTC)


def _raw_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _part_body_bytes(part: Message, ctype: str) -> bytes:
    """The body of a message/* part (a forwarded message, a delivery report) as bytes."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return part.get_payload(decode=True) or b""
    policy = email.policy.compat32.clone(linesep="\r\n")

    def flat(m: Message) -> bytes:
        out = BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=policy).flatten(m)
        return out.getvalue()

    if ctype in ("message/rfc822", "message/global"):
        return flat(payload[0]) if payload else b""
    # message/delivery-status and friends: a list of header blocks, one per paragraph.
    return b"\r\n".join(flat(block) for block in payload)


def _safe_filename(name: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    # A path in a filename is an attempt at path traversal, never useful information.
    name = re.split(r"[/\\]", name)[-1].strip().strip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[:190]}.{ext[:9]}" if dot and len(ext) <= 9 else name[:200]
    return name


def _fallback_filename(content_type: str, n: int) -> str:
    if content_type in ("message/rfc822", "message/global"):
        return "forwarded-message.eml" if n == 1 else f"forwarded-message-{n}.eml"
    if content_type == "message/delivery-status":
        return f"delivery-status-{n}.txt"
    ext = mimetypes.guess_extension(content_type, strict=False)
    if not ext:
        ext = ".txt" if content_type.startswith("text/") else ".bin"
    return f"attachment-{n}{ext}"


class _Meta:
    """A part's MIME metadata, read from a cleaned copy of its headers.

    The stdlib turns a header holding raw 8-bit bytes into a Header object whose text has
    lost those bytes (an attachment named in raw UTF-8 comes out as "�����.zip"); reading
    the raw values and recovering the bytes first keeps such names.
    """

    def __init__(self, part: Message) -> None:
        view = Message()
        view.set_default_type(part.get_default_type())
        for name, value in part.raw_items():
            if name.lower() in _MIME_HEADERS:
                view[name] = _clean(_FOLD.sub(" ", str(value)))
        match = _MEDIA_TYPE.match(view.get_content_type())
        self.content_type = match.group(0) if match else "application/octet-stream"
        self.charset = view.get_param("charset")
        if isinstance(self.charset, tuple):  # RFC 2231 form
            self.charset = self.charset[2]
        disposition = view.get_content_disposition()
        self.disposition = disposition.strip().lower() if disposition else None
        # Content-Disposition filename, then Content-Type name; then the non-standard
        # Content-Type filename= / file= that some old clients write.
        name = view.get_filename() or view.get_param("filename") or view.get_param("file") or ""
        self.filename = _header_str(email.utils.collapse_rfc2231_value(name) if isinstance(name, tuple) else name)
        self.content_id = _header_str(view.get("content-id")).strip().strip("<>").strip() or None


class _Walker:
    """Sorts MIME leaves into body text, body HTML and attachments, depth-first in order."""

    def __init__(self, defects: _Defects) -> None:
        self.defects = defects
        self.texts: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[ParsedAttachment] = []

    def visit(self, part: Message, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.defects.add("MIME nesting too deep; the remaining parts were not read")
            return
        try:
            self._visit(part, depth)
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide its siblings
            self.defects.add(f"unreadable MIME part skipped ({type(exc).__name__}: {str(exc)[:200]})")

    def _visit(self, part: Message, depth: int) -> None:
        meta = _Meta(part)
        payload = part.get_payload()
        if meta.content_type.startswith("message/") and isinstance(payload, list):
            self._attachment(part, meta)
        elif isinstance(payload, list):
            for sub in payload:
                self.visit(sub, depth + 1)
            epilogue = part.epilogue
            if epilogue and _BOUNDARY_LINE.search(epilogue):
                # Parts after the closing delimiter (a reused inner boundary closed the outer
                # multipart early): real attachments hide there, as in mail-parser's corpus.
                self._split_on_found_boundary(epilogue, meta, depth)
        elif meta.content_type.startswith("multipart/"):
            self._broken_multipart(part, meta, depth)
        else:
            self._leaf(part, meta)

    def _leaf(self, part: Message, meta: _Meta) -> None:
        is_text = meta.content_type in ("text/plain", "text/html") and meta.disposition != "attachment"
        if is_text and (not meta.filename or meta.disposition == "inline"):
            self._body(part, meta)
        # A named inline text part is both body and a file (mail-parser does the same).
        if not is_text or meta.filename:
            self._attachment(part, meta)

    def _body(self, part: Message, meta: _Meta) -> None:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = b""
        text, problem = _decode_bytes(data, meta.charset)
        if problem:
            self.defects.add(f"{meta.content_type} part: {problem}")
        text = _clean(text.replace("\r\n", "\n").replace("\r", "\n"))
        if text.strip():
            (self.texts if meta.content_type == "text/plain" else self.htmls).append(text)

    def _broken_multipart(self, part: Message, meta: _Meta, depth: int) -> None:
        # A multipart whose boundary never appears (wrong, missing or reused boundary): find
        # the delimiter actually used and split on it; failing that, read the body as text.
        raw = part.get_payload()
        if not raw.strip():
            return
        if self._split_on_found_boundary(raw, meta, depth):
            return
        self.defects.add(f"{meta.content_type}: no MIME boundary found; body read as plain text")
        meta.content_type = "text/plain"
        self._body(part, meta)

    def _split_on_found_boundary(self, raw: str, meta: _Meta, depth: int) -> bool:
        counts: dict[str, int] = {}
        for token in _BOUNDARY_LINE.findall(raw):
            counts[token] = counts.get(token, 0) + 1
        if not counts:
            return False
        boundary = max(counts, key=counts.__getitem__)
        header = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode()
        children = email.message_from_bytes(header + _raw_bytes(raw)).get_payload()
        if not isinstance(children, list) or not children:
            return False
        self.defects.add(f"{meta.content_type}: parts recovered by splitting on {boundary!r}")
        for sub in children:
            self.visit(sub, depth + 1)
        return True

    def _attachment(self, part: Message, meta: _Meta) -> None:
        ctype = meta.content_type
        if ctype.startswith("message/"):
            data = _attempt(self.defects, f"{ctype} part", b"", lambda: _part_body_bytes(part, ctype))
        else:
            data = _attempt(self.defects, f"{ctype} attachment", b"", lambda: part.get_payload(decode=True) or b"")
        n = len(self.attachments) + 1
        self.attachments.append(
            ParsedAttachment(
                filename=_safe_filename(meta.filename) or _fallback_filename(ctype, n),
                content_type=ctype,
                data=bytes(data) if isinstance(data, (bytes, bytearray)) else b"",
                content_id=meta.content_id,
                inline=meta.disposition == "inline" or (meta.disposition is None and meta.content_id is not None),
            )
        )


def _flatten_mailparser_defects(mp: Any) -> list[str]:
    out: list[str] = []
    for entry in mp.defects or []:
        if isinstance(entry, dict):
            for where, items in entry.items():
                for item in items if isinstance(items, list) else [items]:
                    out.append(f"{where}: {item}")
        else:
            out.append(str(entry))
    return out


def _stdlib_defects(msg: Message) -> list[str]:
    out = []
    for part in msg.walk():
        for defect in getattr(part, "defects", []):
            out.append(f"{part.get_content_type()}: {type(defect).__name__}")
    return out


def _parse(raw: bytes) -> ParsedMessage:
    defects = _Defects()
    mp = None
    try:
        mp = mailparser.MailParser.from_bytes(raw)
        msg = mp.message
        if msg is None:
            raise ValueError("mail-parser returned no message")
    except Exception as exc:  # noqa: BLE001
        defects.add(f"mail-parser failed ({type(exc).__name__}: {str(exc)[:200]}); parsed with the stdlib instead")
        mp = None
        msg = email.message_from_bytes(raw, policy=email.policy.default)

    for d in _attempt(defects, "defects", [], lambda: _flatten_mailparser_defects(mp), lambda: _stdlib_defects(msg)):
        defects.add(_clean(d)[:300])

    # Raw values, not msg.get(): the stdlib loses 8-bit header bytes on the way (see _Meta).
    raw_items = _attempt(defects, "headers", [], lambda: list(msg.raw_items()), lambda: list(msg.items()))
    decoded = [(_clean(str(n)).strip().lower(), _header_str(v)) for n, v in raw_items]
    headers = dict(decoded)
    all_values: dict[str, list[str]] = {}
    for name, value in decoded:
        all_values.setdefault(name, []).append(value)

    def addresses(name: str) -> list[tuple[str, str]]:
        getters = [lambda: getaddresses(all_values.get(name, []))]
        if mp is not None:
            # mail-parser's address parser refuses ambiguous headers ("A <a@x> B <b@y>"),
            # which is what a spoofer sends; its answer stands even when it is empty.
            getters.insert(0, lambda: _addresses_from_mailparser(mp, name))
        return _attempt(defects, f"{name} header", [], *getters)

    sender = addresses("from")
    from_addr = next(iter(_bare(sender)), None)
    from_name = next((n.strip() for n, a in sender if _normalize_addr(a) == from_addr and n.strip()), None)
    if from_name and "\ufffd" in from_name:
        # mail-parser reads 8-bit names through the stdlib's lossy view; ours kept the bytes.
        for n, a in _attempt(defects, "from header", [], lambda: getaddresses(all_values.get("from", []))):
            if _normalize_addr(a) == from_addr and n.strip():
                from_name = n.strip()

    date_getters: list[Callable[[], datetime | None]] = [lambda: _parse_date(headers.get("date"))]
    if mp is not None and mp.date is not None:
        date_getters.insert(0, lambda: mp.date.astimezone(UTC))
    date = _attempt(defects, "date header", None, *date_getters)

    walker = _Walker(defects)
    _attempt(defects, "MIME structure", None, lambda: walker.visit(msg))
    html = "\n".join(walker.htmls) if walker.htmls else None
    text = "\n\n".join(t.strip("\n") for t in walker.texts) if walker.texts else ""
    text = _LEADING_BLANK_LINES.sub("", text).rstrip()
    if not text.strip() and html:
        text = _attempt(defects, "html to text", "", lambda: html_to_text(html))

    # RFC 3834: any Auto-Submitted value but "no" marks machine mail; Precedence is the older
    # convention that autoresponders and list servers still send.
    auto = headers.get("auto-submitted", "").strip().lower()
    auto_submitted = (bool(auto) and not re.match(r"no\b", auto)) or (
        headers.get("precedence", "").strip().lower() in ("bulk", "list", "junk")
    )

    return ParsedMessage(
        message_id=next(iter(_msg_ids(headers.get("message-id"))), None),
        in_reply_to=next(iter(_msg_ids(headers.get("in-reply-to"))), None),
        references=_msg_ids(headers.get("references")),
        subject=next(iter(all_values.get("subject", [])), ""),
        from_addr=from_addr,
        from_name=from_name,
        to=_bare(addresses("to")),
        cc=_bare(addresses("cc")),
        reply_to=_bare(addresses("reply-to")),
        date=date,
        text=text,
        html=html,
        attachments=walker.attachments,
        auto_submitted=auto_submitted,
        headers=headers,
        defects=list(defects),
        parse_ok=mp is not None,
    )


def _minimal(raw: bytes, reason: str) -> ParsedMessage:
    return ParsedMessage(
        message_id=None, in_reply_to=None, references=[], subject="", from_addr=None, from_name=None,
        to=[], cc=[], reply_to=[], date=None,
        text=_clean(bytes(raw).decode("utf-8", "replace")), html=None, attachments=[],
        auto_submitted=False, headers={}, defects=[reason], parse_ok=False,
    )


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw RFC 5322 bytes. Never raises: a message that cannot be parsed comes back with
    its bytes as text, ``parse_ok=False`` and the reason in ``defects``."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        raw = bytes(raw)
    except Exception as exc:  # noqa: BLE001
        return _minimal(b"", f"input is not bytes: {type(exc).__name__}")
    try:
        return _parse(raw)
    except Exception as exc:  # noqa: BLE001 - RecursionError included: the stdlib parser recurses per level
        return _minimal(raw, f"unparseable message ({type(exc).__name__}: {str(exc)[:200]})")
