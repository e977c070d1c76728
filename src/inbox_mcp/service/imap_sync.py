"""The store side of mailbox-server sync (the smtp_imap backend): storing each synced message
together with its server position and the mailbox's sync state, and reconciling flags."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from ..backends.smtp_imap import flags_to_labels
from ..mail.parse import parse_message
from ..store.messages import add_labels, insert_message, remove_labels
from ..store.tables import (
    ImapMessage,
    ImapState,
    Inbox,
    Message,
    MessageLabel,
    Thread,
    utcnow,
)
from .inbound import InboundOps, to_new_message


class ImapSyncOps(InboundOps):
    def imap_last_uid(self, inbox_id: str, mailbox: str, uidvalidity: int) -> int:
        """The last UID stored for this mailbox epoch. A changed UIDVALIDITY starts over from 0;
        messages already stored are recognised by their bytes and not stored twice."""
        with self.db.write() as s:
            state = s.get(ImapState, (inbox_id, mailbox))
            if state is None:
                s.add(ImapState(inbox_id=inbox_id, mailbox=mailbox, uidvalidity=uidvalidity))
                return 0
            if state.uidvalidity != uidvalidity:
                state.uidvalidity, state.last_uid = uidvalidity, 0
                s.add(state)
                return 0
            return state.last_uid

    def store_synced(self, inbox_id: str, mailbox: str, uidvalidity: int, uid: int, raw: bytes, flags: list[str]) -> None:
        parsed = parse_message(raw)
        # No SMTP envelope reaches us through IMAP: SPF is "none"; DKIM and DMARC still apply.
        auth = self.authenticate_inbound(raw, None, None, None)
        unread, keyword_labels = flags_to_labels(flags)
        labels = ["inbox"] + (["unread"] if unread else []) + sorted(keyword_labels)
        with self.db.write() as s:
            state = s.get(ImapState, (inbox_id, mailbox))
            if state is None or state.uidvalidity != uidvalidity or uid <= state.last_uid:
                return  # another worker (or an earlier run) already stored it
            existing = self._existing_copy(s, inbox_id, raw)
            if existing is None:
                msg = insert_message(s, to_new_message(parsed, raw, inbox_id, "in", labels, auth))
                pk = msg.pk
            else:
                pk = existing  # the same bytes under a new UIDVALIDITY: re-link, don't duplicate
            if s.get(ImapMessage, pk) is None:
                s.add(ImapMessage(message_pk=pk, inbox_id=inbox_id, mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, flags=" ".join(sorted(flags))))
            else:
                row = s.get(ImapMessage, pk)
                row.uidvalidity, row.uid, row.flags = uidvalidity, uid, " ".join(sorted(flags))  # type: ignore[union-attr]
                s.add(row)
            state.last_uid, state.synced_at = uid, utcnow()
            s.add(state)
        self.notifier.notify(inbox_id)

    def _existing_copy(self, s: Session, inbox_id: str, raw: bytes) -> int | None:
        digest = hashlib.sha256(raw).hexdigest()
        return s.exec(
            select(Message.pk).where(Message.inbox_id == inbox_id, Message.raw_sha256 == digest, Message.direction == "in")
        ).first()

    def imap_known_uids(self, inbox_id: str, mailbox: str, uidvalidity: int) -> dict[int, str]:
        with self.db.read() as s:
            rows = s.exec(
                select(ImapMessage.uid, ImapMessage.flags).where(
                    ImapMessage.inbox_id == inbox_id, ImapMessage.mailbox == mailbox, ImapMessage.uidvalidity == uidvalidity
                )
            ).all()
        return dict(rows)

    def imap_apply_flags(self, inbox_id: str, mailbox: str, uidvalidity: int, changes: dict[int, list[str]]) -> None:
        with self.db.write() as s:
            for uid, flags in changes.items():
                row = s.exec(
                    select(ImapMessage).where(
                        ImapMessage.inbox_id == inbox_id, ImapMessage.mailbox == mailbox,
                        ImapMessage.uidvalidity == uidvalidity, ImapMessage.uid == uid,
                    )
                ).first()
                msg = s.get(Message, row.message_pk) if row else None
                thread = s.get(Thread, msg.thread_pk) if msg else None
                if row is None or msg is None or thread is None:
                    continue
                old_unread, old_labels = flags_to_labels(row.flags.split())
                unread, labels = flags_to_labels(flags)
                have = set(s.exec(select(MessageLabel.label).where(MessageLabel.message_pk == msg.pk)).all())
                add = sorted((labels - old_labels) - have) + (["unread"] if unread and not old_unread else [])
                rem = sorted((old_labels - labels) & have) + (["unread"] if old_unread and not unread else [])
                add_labels(s, msg, thread, add)
                remove_labels(s, msg, thread, rem)
                row.flags = " ".join(sorted(flags))
                s.add(row)

    def imap_location(self, message_pk: int) -> tuple[str, str, int, int] | None:
        with self.db.read() as s:
            row = s.get(ImapMessage, message_pk)
            inbox = s.get(Inbox, row.inbox_id) if row else None
            if row is None or inbox is None:
                return None
            return inbox.address, row.mailbox, row.uidvalidity, row.uid

    def imap_inboxes(self) -> list[tuple[str, str]]:
        with self.db.read() as s:
            return [(i.id, i.address) for i in s.exec(select(Inbox)).all()]
