"""The approval queue. A held send waits here with its exact bytes; a human approves or rejects
it (CLI now, console later). Approval re-runs the gate with holds waived — pauses, caps and
content rules still apply, and the send counts against caps when it goes out — in the same
transaction that marks the approval decided, so an approved message is sent exactly once."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from ..contract import ApprovalOut, SendResult
from ..errors import Conflict, InvalidArgument, NotFound
from ..mail.compose import OutgoingAttachment
from ..mail.parse import parse_message
from ..policy import audit
from ..store.blobs import get_blob
from ..store.tables import Agent, Approval, Inbox, utcnow
from .base import AgentRef
from .gate import error_for
from .outgoing import Outgoing, Prepared
from .sending import SendOps


def approval_out(a: Approval) -> ApprovalOut:
    req = json.loads(a.request)
    return ApprovalOut(
        approval_id=a.id, status=a.status, rule=a.rule, reason=a.reason, inbox_id=a.inbox_id,  # type: ignore[arg-type]
        to=req["to"], cc=req["cc"], bcc=req["bcc"], subject=req["subject"], created_at=a.created_at,
        expires_at=a.expires_at, decided_at=a.decided_at, decided_by=a.decided_by,
        decision_reason=a.decision_reason, message_id=a.message_id,
    )


def _attachment(filename: str, content_type: str, data: bytes) -> OutgoingAttachment:
    try:
        return OutgoingAttachment(filename, content_type, data)
    except InvalidArgument:  # we composed it, so only an odd parsed type can land here
        return OutgoingAttachment(filename or "attachment.bin", "application/octet-stream", data)


class ApprovalOps(SendOps):
    def _expire(self, s: Session) -> None:
        now = utcnow()
        for a in s.exec(select(Approval).where(Approval.status == "pending", Approval.expires_at <= now)).all():
            a.status, a.decided_at, a.decided_by = "expired", now, "system"
            s.add(a)
            audit.append(s, actor="system", action="approval.expire", target=a.id, decision="expired", rule=a.rule)

    def expire_approvals(self) -> None:
        with self.db.write() as s:
            self._expire(s)

    def get_approval(self, agent: AgentRef, approval_id: str) -> ApprovalOut:
        self.expire_approvals()
        with self.db.read() as s:
            a = s.get(Approval, approval_id)
            if a is None or a.agent_id != agent.id:
                raise NotFound(f"approval {approval_id!r} does not exist")
            return approval_out(a)

    # --- operator side ----------------------------------------------------------------------

    def list_approvals(self, status: str | None = "pending") -> list[ApprovalOut]:
        if status not in (None, "pending", "approved", "rejected", "expired"):
            raise InvalidArgument(f"status must be pending, approved, rejected or expired, got {status!r}")
        self.expire_approvals()
        with self.db.read() as s:
            stmt = select(Approval).order_by(Approval.created_at)
            if status:
                stmt = stmt.where(Approval.status == status)
            return [approval_out(a) for a in s.exec(stmt).all()]

    def show_approval(self, approval_id: str) -> ApprovalOut:
        self.expire_approvals()
        with self.db.read() as s:
            a = s.get(Approval, approval_id)
            if a is None:
                raise NotFound(f"approval {approval_id!r} does not exist")
            return approval_out(a)

    def _pending(self, s: Session, approval_id: str) -> Approval:
        self._expire(s)
        a = s.get(Approval, approval_id)
        if a is None:
            raise NotFound(f"approval {approval_id!r} does not exist")
        if a.status != "pending":
            raise Conflict(f"approval {approval_id} is already {a.status}")
        return a

    def reject(self, approval_id: str, by: str, reason: str) -> ApprovalOut:
        if not reason or not reason.strip():
            raise InvalidArgument("a rejection needs a reason (--reason TEXT)")
        with self.db.write() as s:
            a = self._pending(s, approval_id)
            a.status, a.decided_at, a.decided_by, a.decision_reason = "rejected", utcnow(), by, reason.strip()
            s.add(a)
            audit.append(s, actor=f"operator:{by}", action="approval.reject", target=a.id, decision="rejected", rule=a.rule, detail=reason.strip())
            return approval_out(a)

    def approve(self, approval_id: str, by: str) -> tuple[ApprovalOut, SendResult]:
        with self.db.write() as s:
            a = self._pending(s, approval_id)
            agent_row = s.get(Agent, a.agent_id)
            inbox = s.get(Inbox, a.inbox_id)
            assert agent_row is not None and inbox is not None
            agent = self.agent_ref(s, agent_row)
            req = json.loads(a.request)
            raw = get_blob(s, a.raw_sha256)
            # Content rules meet the held bytes again under today's policy: what is approved is
            # what goes out, and a rule added since the hold still applies.
            parsed = parse_message(raw)
            files = [_attachment(x.filename, x.content_type, x.data) for x in parsed.attachments]
            out = Outgoing(
                inbox.id, req["to"], req["cc"], req["bcc"], req["subject"], parsed.text, parsed.html,
                answers_auto_submitted=req["answers_auto_submitted"],
            )
            prep = Prepared(inbox, raw, parsed.message_id or "", files, req["body_digest"])
            audit.append(s, actor=f"operator:{by}", action="approval.approve", target=a.id, decision="approved", rule=a.rule)
            verdict = self._gate(s, agent, out, prep, approval=a)
            if verdict.outbox_id is not None and verdict.result is not None:
                a.status, a.decided_at, a.decided_by = "approved", utcnow(), by
                a.message_id = verdict.result.message_id
                s.add(a)
        if verdict.outbox_id is None:
            # The approval stays pending (its audit records say why); the operator may retry.
            raise error_for(verdict.decision)
        self.notifier.notify(inbox.id)
        delivery = self._dispatch(verdict.outbox_id)
        return self.show_approval(approval_id), verdict.result.model_copy(update=self._status_fields(delivery))  # type: ignore[union-attr]
