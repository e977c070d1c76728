"""Drafts: a send prepared in steps. Sending a draft goes through the same gate as any send."""

from __future__ import annotations

import json

from sqlmodel import select

from ..contract import AttachmentIn, Deleted, DraftList, DraftOut, SendResult
from ..errors import InvalidArgument
from ..mail.compose import check_header_value
from ..store.ids import new_id
from ..store.tables import Draft, Message, utcnow
from .base import AgentRef
from .outgoing import MAX_SUBJECT_CHARS, Outgoing
from .outgoing import addresses as _addresses
from .sending import SendOps


def draft_out(d: Draft, in_reply_to_id: str | None) -> DraftOut:
    return DraftOut(
        draft_id=d.id, inbox_id=d.inbox_id, to=json.loads(d.to_addrs), cc=json.loads(d.cc_addrs),
        bcc=json.loads(d.bcc_addrs), subject=d.subject, text=d.text, html=d.html,
        attachments=[AttachmentIn.model_validate(a) for a in json.loads(d.attachments)],
        in_reply_to=in_reply_to_id, created_at=d.created_at, updated_at=d.updated_at,
    )


class DraftOps(SendOps):
    def _apply(self, d: Draft, to, cc, bcc, subject, text, html, attachments, check_attachments) -> None:  # type: ignore[no-untyped-def]
        if to is not None:
            d.to_addrs = json.dumps(_addresses(to, "to"))
        if cc is not None:
            d.cc_addrs = json.dumps(_addresses(cc, "cc"))
        if bcc is not None:
            d.bcc_addrs = json.dumps(_addresses(bcc, "bcc"))
        if subject is not None:
            if len(subject) > MAX_SUBJECT_CHARS:
                raise InvalidArgument(f"subject is longer than {MAX_SUBJECT_CHARS} characters")
            d.subject = check_header_value(subject, "subject")
        if text is not None:
            d.text = text
        if html is not None:
            d.html = html
        if attachments is not None:
            d.attachments = json.dumps([a.model_dump(exclude_none=True) for a in attachments])
            check_attachments(attachments)
        d.updated_at = utcnow()

    def create_draft(
        self, agent: AgentRef, inbox_id: str, to: list[str] | None = None, cc: list[str] | None = None,
        bcc: list[str] | None = None, subject: str | None = None, text: str | None = None, html: str | None = None,
        attachments: list[AttachmentIn] | None = None, in_reply_to: str | None = None,
    ) -> DraftOut:
        with self.db.write() as s:
            inbox = self._inbox(s, agent, inbox_id)
            d = Draft(id=new_id("drf"), inbox_id=inbox.id)
            if in_reply_to is not None:
                orig, orig_inbox = self._message(s, agent, in_reply_to)
                if orig_inbox.id != inbox.id:
                    raise InvalidArgument(f"in_reply_to {in_reply_to!r} is a message of another inbox")
                reply = self._reply_outgoing(orig, inbox, reply_all=False)
                d.in_reply_to = orig.id
                d.to_addrs, d.subject = json.dumps(reply.to), reply.subject
            self._apply(d, to, cc, bcc, subject, text, html, attachments, self._attachment_checker(s, agent))
            s.add(d)
        return draft_out(d, d.in_reply_to)

    def _attachment_checker(self, s, agent: AgentRef):  # type: ignore[no-untyped-def]
        """Drafts keep attachment specs, not bytes; resolving them now refuses a bad path,
        invalid base64 or an oversize file when the draft is saved, not when it is sent."""
        limit = self.attachment_limit(agent)
        return lambda specs: self.resolve_attachments(s, agent, specs, limit)

    def update_draft(
        self, agent: AgentRef, draft_id: str, to: list[str] | None = None, cc: list[str] | None = None,
        bcc: list[str] | None = None, subject: str | None = None, text: str | None = None, html: str | None = None,
        attachments: list[AttachmentIn] | None = None,
    ) -> DraftOut:
        with self.db.write() as s:
            d, _ = self._draft(s, agent, draft_id)
            self._apply(d, to, cc, bcc, subject, text, html, attachments, self._attachment_checker(s, agent))
            s.add(d)
        return draft_out(d, d.in_reply_to)

    def list_drafts(self, agent: AgentRef, inbox_id: str) -> DraftList:
        with self.db.read() as s:
            self._inbox(s, agent, inbox_id)
            rows = s.exec(select(Draft).where(Draft.inbox_id == inbox_id).order_by(Draft.updated_at.desc())).all()  # type: ignore[attr-defined]
        return DraftList(drafts=[draft_out(d, d.in_reply_to) for d in rows])

    def delete_draft(self, agent: AgentRef, draft_id: str) -> Deleted:
        with self.db.write() as s:
            d, _ = self._draft(s, agent, draft_id)
            s.delete(d)
        return Deleted(deleted=True, id=draft_id)

    def send_draft(self, agent: AgentRef, draft_id: str, idempotency_key: str | None = None) -> SendResult:
        with self.db.read() as s:
            d, inbox = self._draft(s, agent, draft_id)
            out = Outgoing(
                inbox.id, json.loads(d.to_addrs), json.loads(d.cc_addrs), json.loads(d.bcc_addrs), d.subject,
                d.text, d.html, [AttachmentIn.model_validate(a) for a in json.loads(d.attachments)],
            )
            if d.in_reply_to:
                orig = s.exec(select(Message).where(Message.id == d.in_reply_to)).first()
                if orig is not None:
                    threaded = self._reply_outgoing(orig, inbox, reply_all=False)
                    out.in_reply_to, out.references = threaded.in_reply_to, threaded.references
                    out.answers_auto_submitted = threaded.answers_auto_submitted
        result = self._submit(agent, out, idempotency_key or f"draft:{draft_id}")
        with self.db.write() as s:
            row = s.get(Draft, draft_id)
            if row is not None:
                s.delete(row)
        return result


