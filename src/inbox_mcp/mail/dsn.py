"""Inbound bounces: recognise a delivery-status notification and find which of our messages it
refers to, so a send can be marked failed and the anomaly check can count bounce rates (§5).

Two shapes exist in the wild:
- RFC 3464 ``multipart/report; report-type=delivery-status``: a machine-readable
  ``message/delivery-status`` part (per-recipient Action / Status), and the returned message as
  ``message/rfc822`` or its headers as ``text/rfc822-headers``. Postfix, Gmail, Exchange/365,
  Sendmail and current Exim send this.
- Older or home-grown bounces: plain text from MAILER-DAEMON or postmaster, with the failed
  addresses in the prose (or an ``X-Failed-Recipients`` header) and a copy of the original
  headers quoted in the body. These are recognised by sender and subject, cautiously: a human
  message about a bounce must not count as one.

``parse_bounce`` never raises: inbound mail is hostile or broken often enough, and a bounce we
cannot read is just a message.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message

from inbox_mcp.mail.html_text import html_to_text


@dataclass(frozen=True)
class Bounce:
    original_message_ids: list[str]  # Message-IDs (with <>) of the bounced message, as found
    recipients: list[str]  # failed recipients, lowercase addresses
    action: str  # "failed" | "delayed" | ... (from the DSN Action field)
    status: str | None  # enhanced status code, e.g. "5.1.1"
    permanent: bool  # True for failed / 5.x.x


_DSN_TYPES = {"message/delivery-status", "message/global-delivery-status"}
_RETURNED_TYPES = {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
_NOT_FAILURES = {"delivered", "relayed", "expanded"}
# Enough for any real bounce; caps the work a hostile message can cause.
_MAX_PARTS = 200
_MAX_TEXT = 1_000_000

_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_FAILURE_STATUS = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_MSG_ID = re.compile(r"<[^<>\s]+>")
# A Message-ID header quoted in a bounce's body, possibly indented or ">"-quoted, possibly folded.
_QUOTED_MSG_ID = re.compile(
    r"^[ \t>]*Message-ID[ \t]*:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>|[^\s<>]+@[^\s<>]+)", re.IGNORECASE | re.MULTILINE
)
_ADDRESS = r"[^\s<>()\"',;:@]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
# A line that is only a failed address, as bounces list them: "  bob@example.org" (Exim, Gmail),
# "<bob@example.org>: host … said: 550 …" (Postfix, qmail), "Bob (bob@example.org)" (Exchange).
_RECIPIENT_LINES = (
    re.compile(rf"^[ \t]*<?({_ADDRESS})>?[ \t]*(?::.*)?$", re.MULTILINE),
    re.compile(rf"^[ \t]*[^<>()@\n]{{0,80}}\(({_ADDRESS})\)[ \t]*$", re.MULTILINE),
    re.compile(rf"^[ \t]*({_ADDRESS})[ \t]*<mailto:[^>\n]*>[ \t]*$", re.MULTILINE),
)
# Where a non-standard bounce starts quoting the original message: failed addresses come before.
# "The original message was received at …" (Sendmail) opens the explanation, so "original
# message" alone is not a boundary.
_QUOTE_START = re.compile(
    r"^.*(?:copy of (?:the|your) message|below this line|original message(?: follows| headers|[ \t]*[-:]|[ \t]*$)"
    r"|returned message|undelivered message|message headers? follows?|headers of the original).*$"
    r"|^(?:Return-Path|Received|Message-ID)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    r"undelivered mail|undeliverable|undelivered|returned mail|failure notice|mail delivery failed"
    r"|mail delivery failure|delivery status notification \((?:failure|delay)\)|delivery failure"
    r"|delivery (?:has )?failed|delivery notification: (?:delivery has failed|delay)|non[- ]?delivery|message not delivered"
    r"|message could not be delivered|could not send message|warning: could not send message"
    r"|warning: message \S+ delayed|delayed mail|delivery delayed|mail system error"
    r"|unzustellbar|non remis|non recapitabile|no se puede entregar|onbestelbaar|olevererbart"
    r")",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(r"\bdelay(?:ed)?\b|\bwarning\b|still being retried", re.IGNORECASE)
_DAEMON_LOCALS = {"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster", "mdaemon"}
_DAEMON_NAMES = ("mailer-daemon", "mailer daemon", "mail delivery", "postmaster")


def parse_bounce(raw: bytes) -> Bounce | None:
    """The bounce ``raw`` is, or None when it is not one (or is only a success notification)."""
    try:
        return _parse(raw)
    except Exception:  # noqa: BLE001 - never raise on hostile input; an unreadable bounce is mail
        return None


def _parse(raw: bytes) -> Bounce | None:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = list(_leaves(msg))
    declared = msg.get_content_type() == "multipart/report"
    report_type = str(msg.get_param("report-type") or "").strip().lower() if declared else ""
    dsn_parts = [p for p in parts if p.get_content_type() in _DSN_TYPES]
    if dsn_parts:
        blocks = _recipient_blocks([b for p in dsn_parts for b in _dsn_blocks(_dsn_text(p))])
        if any(_action(b) for b in blocks):
            return _from_dsn(msg, parts, blocks)
        # A delivery-status part without per-recipient fields: fall back to reading the prose.
    elif declared and report_type != "delivery-status":
        return None  # read receipts (disposition-notification), abuse reports (feedback-report)
    elif not (declared or _looks_like_bounce(msg)):
        return None
    return _from_prose(msg, parts)


# --- MIME --------------------------------------------------------------------------------------


def _leaves(msg: Message) -> Iterator[Message]:
    """Leaf parts in order, without descending into attached messages: the returned original
    (or a forwarded bounce) is a leaf, not part of the report."""
    stack, seen = [msg], 0
    while stack and seen < _MAX_PARTS:
        part = stack.pop()
        seen += 1
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(reversed(payload))
        else:
            yield part


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return _decode(data[:_MAX_TEXT], part.get_content_charset()).replace("\r\n", "\n")


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # noqa: BLE001 - malformed encoded words: the raw text is still useful
        return str(value)


# --- RFC 3464 ------------------------------------------------------------------------------------


def _dsn_text(part: Message) -> str:
    """The delivery-status fields as text. The stdlib pre-parses this part into one Message per
    field block, which is garbage when a sender base64- or QP-encoded it; join and decode."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = []
        for block in payload:
            lines = [f"{k}: {v}" for k, v in block.items()]
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                lines.append(body)
            blocks.append("\n".join(lines))
        text = "\n\n".join(blocks)
    else:
        text = str(payload)
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64":
        try:
            return _decode(base64.b64decode(re.sub(r"\s+", "", text)), part.get_content_charset())
        except (binascii.Error, ValueError):
            return text
    if cte == "quoted-printable":
        return _decode(quopri.decodestring(text.encode("utf-8", errors="replace")), part.get_content_charset())
    return text


def _dsn_blocks(text: str) -> list[dict[str, str]]:
    """Field blocks (separated by blank lines) as {lowercase name: unfolded value}; the first
    occurrence of a field in a block wins."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text[:_MAX_TEXT]):
        fields: dict[str, str] = {}
        for line in re.sub(r"\r?\n[ \t]+", " ", chunk).splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() and " " not in name.strip():
                fields.setdefault(name.strip().lower(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _action(block: dict[str, str]) -> str | None:
    words = block.get("action", "").lower().split()
    if words:
        return words[0].rstrip(";,.")
    status = _status(block)
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[0]) if status else None


def _status(block: dict[str, str]) -> str | None:
    for field in ("status", "diagnostic-code"):
        m = _STATUS.search(block.get(field, ""))
        if m:
            return m.group(1)
    return None


def _dsn_address(value: str) -> str | None:
    # "rfc822; bob@example.org" (or "utf-8; …" under RFC 6533); some MTAs omit the type.
    address = value.rpartition(";")[2].strip().strip("<>").strip().lower()
    return address if "@" in address and not any(c.isspace() for c in address) else None


def _recipient_blocks(blocks: list[dict[str, str]]) -> list[dict[str, str]]:
    return [b for b in blocks if {"action", "final-recipient", "original-recipient"} & b.keys()]


def _from_dsn(msg: Message, parts: list[Message], blocks: list[dict[str, str]]) -> Bounce | None:
    """Failures win over delays: one report can cover several recipients with different fates."""
    actions = [_action(b) for b in blocks]
    ranked = ["failed", "delayed"] + [a for a in actions if a and a not in ("failed", "delayed", *_NOT_FAILURES)]
    for wanted in ranked:
        chosen = [b for b, a in zip(blocks, actions) if a == wanted]
        if chosen:
            return _bounce(msg, parts, wanted, chosen)
    return None  # a success notification: every recipient delivered, relayed or expanded


def _bounce(msg: Message, parts: list[Message], action: str, blocks: list[dict[str, str]]) -> Bounce:
    recipients = [
        a for b in blocks for f in ("final-recipient", "original-recipient") if (a := _dsn_address(b.get(f, "")))
    ]
    status = next((s for b in blocks if (s := _status(b))), None)
    return Bounce(
        original_message_ids=_original_ids(msg, parts),
        recipients=_unique(recipients) or _failed_recipients_header(msg) or _prose_recipients(msg, parts),
        action=action,
        status=status,
        permanent=action == "failed" or (status or "").startswith("5"),
    )


# --- non-standard bounces ------------------------------------------------------------------------


def _is_daemon(msg: Message) -> bool:
    return_path = msg.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return True  # the null sender: only delivery reports are sent from it
    name, address = email.utils.parseaddr(_header(msg, "From"))
    local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
    return (
        local in _DAEMON_LOCALS
        or local.startswith("microsoftexchange")
        or any(n in name.lower() for n in _DAEMON_NAMES)
    )


def _looks_like_bounce(msg: Message) -> bool:
    if msg.get("X-Failed-Recipients"):
        return True
    if not _BOUNCE_SUBJECT.match(_header(msg, "Subject")):
        return False
    # Not "Auto-Submitted: auto-replied" alone: Postfix and Exim mark their bounces so too, and
    # so does every out-of-office reply.
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    return _is_daemon(msg) or auto.startswith("auto-generated")


def _from_prose(msg: Message, parts: list[Message]) -> Bounce:
    # MIME broken enough to lose the part boundaries (a truncated boundary parameter) still
    # leaves the delivery-status fields readable in the text.
    blocks = _recipient_blocks(_dsn_blocks(_body_text(parts)))
    if any(_action(b) for b in blocks):
        standard = _from_dsn(msg, parts, blocks)
        if standard is not None:
            return standard
    subject = _header(msg, "Subject")
    action = "delayed" if _DELAY_SUBJECT.search(subject) else "failed"
    diagnostic = _diagnostic_text(parts)
    m = _FAILURE_STATUS.search(diagnostic)
    status = m.group(1) if m else None
    return Bounce(
        original_message_ids=_original_ids(msg, parts),
        recipients=_failed_recipients_header(msg) or _prose_recipients(msg, parts),
        action=action,
        status=status,
        permanent=action == "failed" or (status or "").startswith("5"),
    )


def _is_plain(part: Message) -> bool:
    if _is_attachment(part):
        return False
    # A multipart whose boundary could not be found is left as one text payload.
    return part.get_content_type() == "text/plain" or (
        part.get_content_maintype() == "multipart" and isinstance(part.get_payload(), str)
    )


def _body_text(parts: list[Message]) -> str:
    texts = [_part_text(p) for p in parts if _is_plain(p)]
    if not any(t.strip() for t in texts):
        texts = [html_to_text(_part_text(p)) for p in parts if p.get_content_type() == "text/html" and not _is_attachment(p)]
    return "\n".join(texts)[:_MAX_TEXT]


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).strip().lower().startswith("attachment")


def _diagnostic_text(parts: list[Message]) -> str:
    """The bounce's own explanation: its body up to where it starts quoting the original."""
    text = _body_text(parts)
    m = _QUOTE_START.search(text)
    return text[: m.start()] if m else text


def _failed_recipients_header(msg: Message) -> list[str]:
    values = msg.get_all("X-Failed-Recipients") or []
    return _unique([a.lower() for _, a in email.utils.getaddresses([str(v) for v in values]) if "@" in a])


def _prose_recipients(msg: Message, parts: list[Message]) -> list[str]:
    text = _diagnostic_text(parts)
    found: list[tuple[int, str]] = []
    for rx in _RECIPIENT_LINES:
        found += [(m.start(), m.group(1).lower()) for m in rx.finditer(text)]
    # The bounce is addressed to our sender, who may be named in the prose; never a failure.
    ours = {a.lower() for _, a in email.utils.getaddresses([_header(msg, "To")])}
    return _unique([a for _, a in sorted(found) if a not in ours])


# --- the original message ------------------------------------------------------------------------


def _ids_in(value: str) -> list[str]:
    ids = _MSG_ID.findall(value)
    if ids:
        return ids
    value = value.strip()
    return [f"<{value}>"] if "@" in value and not any(c.isspace() for c in value) else []


def _returned_part_ids(part: Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        # Only the returned message's own header: its body may quote other messages' headers.
        return [i for sub in payload if isinstance(sub, Message) for v in sub.get_all("Message-ID") or [] for i in _ids_in(str(v))]
    m = _QUOTED_MSG_ID.search(_part_text(part))
    return _ids_in(m.group(1)) if m else []


def _original_ids(msg: Message, parts: list[Message]) -> list[str]:
    """Most reliable source first: the returned message or its headers, then headers quoted in the
    body, then the bounce's own In-Reply-To (Exchange sets it to the original)."""
    for part in parts:
        if part.get_content_type() in _RETURNED_TYPES:
            ids = _returned_part_ids(part)
            if ids:
                return _unique(ids)
    m = _QUOTED_MSG_ID.search(_body_text(parts))
    if m:
        return _ids_in(m.group(1))
    in_reply_to = _ids_in(str(msg.get("In-Reply-To", "")))
    if in_reply_to:
        return in_reply_to[:1]
    references = _MSG_ID.findall(str(msg.get("References", "")))
    return references[-1:]


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
