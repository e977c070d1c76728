"""Outgoing messages, built with the stdlib ``email`` package only.

Everything an agent supplies is validated here, because every send path (send, reply, forward,
drafts, approvals, REST) ends in ``compose_message``: a CR or LF in any header value would let
an agent inject headers (a hidden Bcc, a forged From), so it is refused, not stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, UTC
from email import policy as email_policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from inbox_mcp.errors import InvalidArgument
from inbox_mcp.mail.html_text import html_to_text

# RFC 6838 restricted-name for both halves of a media type.
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
# Dot-atom local part (RFC 5322 atext). Quoted local parts and SMTPUTF8 local parts are
# legal but so rare in practice that refusing them is the safer trade for an agent API.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ":" (RFC 5322 ftext)
_MSG_ID = re.compile(r"^<[^<>\s]+>$")
_MAX_MSG_ID = 900  # SMTP allows 998 octets per line, header name included
# Headers that compose_message owns; letting extra_headers set them would bypass validation
# (From, Bcc) or produce a broken message (duplicate Message-ID, conflicting MIME headers).
_RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
        "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition", "return-path", "received",
    }
)


class _MessageIdListHeader(UnstructuredHeader):
    """In-Reply-To / References: a list of msg-ids folded only between ids.

    The stdlib treats these as unstructured text and, for an id longer than a line (Gmail's
    often are), RFC 2047-encodes it, which breaks threading in every receiving client.
    """

    @classmethod
    def parse(cls, value: str, kwds: dict) -> None:
        super().parse(value, kwds)
        kwds["decoded"] = " ".join(str(value).split())

    def fold(self, *, policy: email_policy.EmailPolicy) -> str:
        lines: list[str] = []
        current = f"{self.name}:"  # type: ignore[attr-defined]
        for msg_id in str(self).split():
            if len(current) + 1 + len(msg_id) > policy.max_line_length and current.endswith(">"):
                lines.append(current)
                current = ""
            current += f" {msg_id}"
        lines.append(current)
        return policy.linesep.join(lines) + policy.linesep


def _policy() -> email_policy.EmailPolicy:
    registry = HeaderRegistry()
    registry.map_to_type("in-reply-to", _MessageIdListHeader)
    registry.map_to_type("references", _MessageIdListHeader)
    # cte_type="7bit": bodies go out quoted-printable/base64, so delivery never depends on
    # the next hop supporting 8BITMIME, and no body line can exceed SMTP's 998 octets.
    return email_policy.SMTP.clone(header_factory=registry, cte_type="7bit")


_POLICY = _policy()


def check_header_value(value: str, field: str) -> str:
    """Return ``value`` if it is safe inside a header; InvalidArgument naming ``field`` if not."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string")
    if "\r" in value or "\n" in value:
        raise InvalidArgument(f"{field} contains CR or LF")
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character")
    _check_unicode(value, field)
    return value


def _check_unicode(value: str, field: str) -> None:
    # JSON allows "\ud800", which Python decodes to a lone surrogate no encoder accepts.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} is not valid Unicode (it contains a lone surrogate)") from None


def validate_address(addr: str, field: str) -> str:
    """A bare address ``local@domain``, returned with the domain lowercased (and IDNA-encoded
    when it is not ASCII). InvalidArgument "invalid address 'x' in <field>" otherwise."""
    check_header_value(addr, field)
    candidate = addr.strip()
    invalid = InvalidArgument(f"invalid address {addr!r} in {field}")
    if len(candidate) > 254 or candidate.count("@") != 1:
        raise invalid
    local, domain = candidate.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        raise invalid
    domain = domain.lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise invalid from None
    labels = domain.split(".")
    # A dotless domain only for localhost: "root@mailhost" is almost always a typo for an agent.
    if (len(labels) < 2 and domain != "localhost") or not all(_DOMAIN_LABEL.match(x) for x in labels):
        raise invalid
    if labels[-1].isdigit():
        raise invalid  # bare IP addresses are not domains; address literals are not supported
    return f"{local}@{domain}"


def _validate_media_type(content_type: str, field: str) -> str:
    check_header_value(content_type, field)
    media = content_type.strip().lower()
    if not _MEDIA_TYPE.match(media):
        raise InvalidArgument(f"{field} {content_type!r} is not a media type like 'application/pdf'")
    if media.startswith("multipart/"):
        raise InvalidArgument(f"{field} {content_type!r}: multipart types cannot be attached")
    return media


def _normalize_msg_id(value: str, field: str) -> str | None:
    """``<id>`` for a message id given with or without brackets; None for one too long to put
    on a header line (a hostile sender's Message-ID must not make replying to it fail)."""
    check_header_value(value, field)
    msg_id = value.strip()
    if msg_id and not msg_id.startswith("<"):
        msg_id = f"<{msg_id}>"
    if not _MSG_ID.match(msg_id):
        raise InvalidArgument(f"{field} {value!r} is not a message id like '<id@example.com>'")
    return msg_id if len(msg_id) <= _MAX_MSG_ID else None


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str  # "type/subtype", e.g. "application/pdf"
    data: bytes

    def __post_init__(self) -> None:
        # Validate at construction so a bad attachment fails where the caller builds it.
        check_header_value(self.filename, "attachment filename")
        if not self.filename.strip():
            raise InvalidArgument("attachment filename is empty")
        _validate_media_type(self.content_type, "attachment content_type")
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise InvalidArgument("attachment data must be bytes")


@dataclass(frozen=True)
class ComposedMessage:
    raw: bytes  # CRLF line endings, ready for SMTP
    message_id: str  # "<...@domain>", angle brackets included


def _addresses(addrs: Iterable[str], field: str) -> list[Address]:
    if isinstance(addrs, str):
        raise InvalidArgument(f"{field} must be a list of addresses")
    return [Address(addr_spec=validate_address(a, field)) for a in addrs]


def _attach(msg: EmailMessage, att: OutgoingAttachment) -> None:
    media = _validate_media_type(att.content_type, "attachment content_type")
    maintype, subtype = media.split("/", 1)
    data = bytes(att.data)
    filename = att.filename.strip()
    if media == "message/rfc822" and _is_7bit_clean(data):
        # RFC 2046 forbids base64 on message/rfc822; a 7-bit message can travel as it is.
        part = EmailMessage(policy=_POLICY)
        part.set_payload(data.decode("ascii"))
        part["Content-Type"] = "message/rfc822"
        part["Content-Transfer-Encoding"] = "7bit"
        part["Content-Disposition"] = "attachment"
        part.set_param("filename", filename, header="Content-Disposition")
        if msg.get_content_type() != "multipart/mixed":
            msg.make_mixed()
        msg.attach(part)
        return
    # Everything else (including an 8-bit message/rfc822, which mail clients accept in
    # base64) goes out base64, so the recipient gets exactly these bytes.
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)


def _is_7bit_clean(data: bytes) -> bool:
    return data.isascii() and b"\x00" not in data and all(len(line) <= 998 for line in data.splitlines())


def compose_message(
    *,
    from_addr: str,
    from_name: str | None,
    to: list[str],
    cc: list[str],
    subject: str,
    text: str | None,
    html: str | None,
    attachments: Sequence[OutgoingAttachment] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    message_id_domain: str,
    extra_headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> ComposedMessage:
    """Build an RFC 5322 message. Bcc recipients are the caller's envelope business and never
    appear here. Message ids too long for a header line (only a hostile sender makes those)
    are left out of In-Reply-To/References. Raises InvalidArgument naming the offending field."""
    sender = validate_address(from_addr, "from")
    if from_name is not None:
        check_header_value(from_name, "from_name")
    to_list = _addresses(to, "to")
    cc_list = _addresses(cc, "cc")
    check_header_value(subject, "subject")
    check_header_value(message_id_domain, "message_id_domain")
    domain = message_id_domain.strip()
    if not domain or not re.match(r"^[A-Za-z0-9.-]+$", domain):
        raise InvalidArgument(f"message_id_domain {message_id_domain!r} is not a domain")
    for body, name in ((text, "text"), (html, "html")):
        if body is not None:
            if not isinstance(body, str):
                raise InvalidArgument(f"{name} must be a string")
            _check_unicode(body, name)

    parent = _normalize_msg_id(in_reply_to, "in_reply_to") if in_reply_to else None
    if isinstance(references, str):
        raise InvalidArgument("references must be a list of message ids")
    normalized = (_normalize_msg_id(r, "references") for r in references if r and r.strip())
    refs = list(dict.fromkeys(r for r in normalized if r))

    extras: list[tuple[str, str]] = []
    for name, value in (extra_headers or {}).items():
        check_header_value(name, "extra header name")
        if not _HEADER_NAME.match(name):
            raise InvalidArgument(f"extra header name {name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidArgument(f"extra header {name!r} is set by the composer and cannot be overridden")
        extras.append((name, check_header_value(value, f"header {name}")))

    for att in attachments:
        if not isinstance(att, OutgoingAttachment):
            raise InvalidArgument("attachments must be OutgoingAttachment values")

    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    message_id = make_msgid(domain=domain)

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = Address(display_name=(from_name or "").strip(), addr_spec=sender)
    if to_list:
        msg["To"] = to_list
    if cc_list:
        msg["Cc"] = cc_list
    if not to_list and not cc_list:
        # Bcc-only mail: RFC 5322 §3.6.3 suggests an empty group rather than no To at all.
        msg["To"] = "undisclosed-recipients:;"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id
    if parent:
        msg["In-Reply-To"] = parent
    if refs:
        msg["References"] = " ".join(refs)
    for name, value in extras:
        msg[name] = value

    if html is not None:
        # Mail with only an HTML part is read as spam-like and is useless to text-only
        # readers (and to agents); the plain part is derived when none was given.
        msg.set_content(text if text is not None else html_to_text(html))
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(text or "")
    for att in attachments:
        _attach(msg, att)

    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # the stdlib repeats it on every part; only the top needs it
    return ComposedMessage(raw=msg.as_bytes(policy=_POLICY), message_id=message_id)
