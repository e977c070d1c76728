"""What an agent asked to send, before the gate: the recipients, the content, the threading
headers — and the composed bytes, built once, so that what the policy judges, what a human
approves and what goes out are the same message."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sqlmodel import Session

from ..contract import AttachmentIn
from ..errors import InvalidArgument
from ..mail.compose import OutgoingAttachment, compose_message, validate_address
from ..mail.subjects import forward_subject, reply_subject
from ..store.tables import Inbox, Message
from .attachments_in import AttachmentResolver
from .authentication import AuthenticationOps
from .base import AgentRef
from .views import attachments_of

MAX_SUBJECT_CHARS = 998


@dataclass
class Outgoing:
    inbox_id: str
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentIn] = field(default_factory=list)
    in_reply_to: str | None = None  # Message-ID header we answer
    references: list[str] = field(default_factory=list)
    answers_auto_submitted: bool = False  # a reply to an automatic message (loop risk)

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to + self.cc + self.bcc))


@dataclass(frozen=True)
class Prepared:
    """The composed message and the facts about it the policy needs."""

    inbox: Inbox
    raw: bytes
    message_id: str
    files: list[OutgoingAttachment]
    body_digest: str


def addresses(values: list[str] | str | None, field_name: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        addr = validate_address(v, field_name)
        if addr not in out:
            out.append(addr)
    return out


def body_digest(text: str | None, html: str | None, files: list[OutgoingAttachment]) -> str:
    h = hashlib.sha256()
    for part in (text or "", html or "", *[hashlib.sha256(f.data).hexdigest() for f in files]):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def request_hash(out: Outgoing) -> str:
    payload = json.dumps(
        [out.inbox_id, out.to, out.cc, out.bcc, out.subject, out.text, out.html,
         [a.model_dump() for a in out.attachments], out.in_reply_to],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class OutgoingOps(AttachmentResolver, AuthenticationOps):
    def _reply_outgoing(self, orig: Message, inbox: Inbox, reply_all: bool) -> Outgoing:
        me = inbox.address.lower()
        if orig.direction == "out":
            to = json.loads(orig.to_addrs)
            cc = json.loads(orig.cc_addrs) if reply_all else []
        else:
            to = json.loads(orig.reply_to) or ([orig.from_addr] if orig.from_addr else [])
            cc = [a for a in json.loads(orig.to_addrs) + json.loads(orig.cc_addrs) if a.lower() != me] if reply_all else []
        if not to:
            raise InvalidArgument(f"message {orig.id} has no sender address to reply to")
        cc = [a for a in dict.fromkeys(cc) if a not in to]
        refs = [r for r in orig.references.split() if r]
        if orig.message_id_header:
            refs.append(orig.message_id_header)
        return Outgoing(
            inbox.id, to, cc, [], reply_subject(orig.subject),
            in_reply_to=orig.message_id_header, references=refs[-20:],
            answers_auto_submitted=orig.direction == "in" and orig.auto_submitted,
        )

    def _forward_outgoing(self, s: Session, orig: Message, inbox: Inbox, to: list[str], text: str | None) -> Outgoing:
        who = f"{orig.from_name} <{orig.from_addr}>" if orig.from_name else (orig.from_addr or "")
        quoted = (
            "---------- Forwarded message ---------\n"
            f"From: {who}\nDate: {orig.date or orig.received_at}\nSubject: {orig.subject}\n"
            f"To: {', '.join(json.loads(orig.to_addrs))}\n\n{orig.text}"
        )
        body = f"{text}\n\n{quoted}" if text else quoted
        atts = [AttachmentIn(message_id=orig.id, attachment_id=a.id) for a in attachments_of(s, orig)]
        refs = [r for r in orig.references.split() if r] + ([orig.message_id_header] if orig.message_id_header else [])
        return Outgoing(
            inbox.id, to, [], [], forward_subject(orig.subject), body, None, atts,
            in_reply_to=orig.message_id_header, references=refs[-20:],
        )

    def _prepare(self, agent: AgentRef, out: Outgoing) -> Prepared:
        if not out.recipients:
            raise InvalidArgument("to is empty: a message needs at least one recipient")
        if not isinstance(out.subject, str) or len(out.subject) > MAX_SUBJECT_CHARS:
            raise InvalidArgument(f"subject must be a string of at most {MAX_SUBJECT_CHARS} characters")
        with self.db.read() as s:
            inbox = self._inbox(s, agent, out.inbox_id)
            files = self.resolve_attachments(s, agent, out.attachments, self.attachment_limit(agent))
        composed = compose_message(
            from_addr=inbox.address, from_name=inbox.display_name, to=out.to, cc=out.cc, subject=out.subject,
            text=out.text, html=out.html, attachments=files, in_reply_to=out.in_reply_to,
            references=out.references, message_id_domain=self.settings.domain,
        )
        # Signed once, here: the stored sent copy, the held bytes and what goes out are identical.
        raw = self.dkim_sign(composed.raw, inbox.address)
        return Prepared(inbox, raw, composed.message_id, files, body_digest(out.text, out.html, files))
