"""Mail arriving for our inboxes, from the SMTP listener or from local delivery: the
``InboundSink`` the backends call. Every message is stored raw first; a parse failure still
yields a readable message (its text is the raw source)."""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import bindparam
from sqlmodel import Session, select

from ..mail.dsn import Bounce as BounceReport
from ..mail.dsn import parse_bounce
from ..mail.parse import ParsedMessage, parse_message
from ..mail.subjects import normalize_subject
from ..policy.loader import PolicyError
from ..policy.models import address_matches
from ..store.messages import NewAttachment, NewMessage, insert_message
from ..store.tables import Bounce, Inbox, Message
from .anomaly import AnomalyOps
from .authentication import AuthenticationOps

log = logging.getLogger(__name__)

_HAS_COPY = (
    select(Message.pk)
    .where(Message.inbox_id == Inbox.id, Message.raw_sha256 == bindparam("sha"), Message.direction == "in")
    .limit(1)
    .exists()
)
_RECIPIENT_INBOXES = select(Inbox.id, _HAS_COPY).where(Inbox.address.in_(bindparam("addrs", expanding=True)))  # type: ignore[attr-defined]


def to_new_message(
    parsed: ParsedMessage, raw: bytes, inbox_id: str, direction: str, labels: list[str], auth: dict[str, str] | None = None
) -> NewMessage:
    key = normalize_subject(parsed.subject)
    return NewMessage(
        inbox_id=inbox_id,
        raw=raw,
        direction=direction,
        labels=labels,
        message_id_header=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        subject=parsed.subject,
        subject_key=key,
        is_reply_subject=key != " ".join(parsed.subject.split()).casefold(),
        from_addr=parsed.from_addr,
        from_name=parsed.from_name,
        to=parsed.to,
        cc=parsed.cc,
        reply_to=parsed.reply_to,
        date=parsed.date,
        text=parsed.text,
        html=parsed.html,
        attachments=[NewAttachment(a.filename, a.content_type, a.data, a.content_id, a.inline) for a in parsed.attachments],
        parse_ok=parsed.parse_ok,
        auto_submitted=parsed.auto_submitted,
        auth_results=auth or {},
    )


class InboundOps(AuthenticationOps, AnomalyOps):
    """Implements backends.base.InboundSink."""

    def _is_local(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() == self.settings.domain

    def check_recipient(self, address: str) -> tuple[int, str] | None:
        address = address.strip().lower()
        if not self._is_local(address):
            return 550, f"5.7.1 relaying denied: this server accepts mail for {self.settings.domain} only"
        with self.db.read() as s:
            if s.exec(select(Inbox.id).where(Inbox.address == address)).first() is None:
                return 550, f"5.1.1 <{address}>: no such mailbox"
        return None

    def check_sender(self, address: str | None, size: int | None) -> tuple[int, str] | None:
        policy = self.policies.effective("default", "")
        if isinstance(policy, PolicyError):
            return 451, f"4.3.5 inbound policy unusable: {policy}"
        sender = (address or "").lower()
        if sender and address_matches(sender, policy.inbound.block_senders):
            return 550, f"5.7.1 sender {sender} is blocked by inbound.block_senders"
        if sender and not address_matches(sender, policy.inbound.allow_senders):
            return 550, f"5.7.1 sender {sender} is not in inbound.allow_senders"
        if size is not None and size > policy.inbound.max_message_bytes:
            return 552, f"5.3.4 message size {size} exceeds inbound.max_message_bytes = {policy.inbound.max_message_bytes}"
        return None

    def receive(self, raw: bytes, recipients: list[str], sender: str | None, auth: dict[str, str] | None = None) -> None:
        parsed = parse_message(raw)
        bounce = parse_bounce(raw)
        addresses = sorted({r.strip().lower() for r in recipients})
        delivered: list[str] = []
        digest = hashlib.sha256(raw).hexdigest()
        with self.db.write() as s:
            # One query: the recipients' inboxes, and whether each already holds these bytes
            # (a retried delivery must never become a second copy).
            for inbox_id, have in s.connection().execute(_RECIPIENT_INBOXES, {"addrs": addresses, "sha": digest}).all():
                if have:
                    continue
                insert_message(s, to_new_message(parsed, raw, inbox_id, "in", ["inbox", "unread"], auth))
                delivered.append(inbox_id)
                if bounce is not None:
                    self._record_bounce(s, s.get(Inbox, inbox_id), bounce)  # type: ignore[arg-type]
        for inbox_id in delivered:
            self.notifier.notify(inbox_id)

    def _record_bounce(self, s: Session, inbox: Inbox, bounce: BounceReport) -> None:
        """A delivery-status notification about one of this inbox's own messages: its delivery
        status becomes readable, and permanent failures count towards the bounce-rate rule."""
        ids = bounce.original_message_ids
        if not ids:
            return
        ours = s.exec(
            select(Message).where(Message.inbox_id == inbox.id, Message.direction == "out", Message.message_id_header.in_(ids))  # type: ignore[union-attr]
        ).all()
        for msg in ours:
            if bounce.permanent:
                msg.status = "bounced"
                s.add(msg)
                for rcpt in bounce.recipients or [""]:
                    s.add(Bounce(agent_id=inbox.agent_id, message_pk=msg.pk, recipient=rcpt, status=bounce.status, permanent=True))  # type: ignore[arg-type]
            elif msg.status == "sent":
                msg.status = "delayed"
                s.add(msg)
        if ours and bounce.permanent:
            s.flush()
            self._pause_on_bounce_rate(s, inbox.agent_id)
