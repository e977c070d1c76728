"""Sending: send_message, reply, forward and check_send, and the durable outbox.

Every path ends in ``_submit``, which prepares the message once and passes it through the gate
(service/gate.py) in a single write transaction; only after that commits is the message handed
to the backend, so a crash in between loses nothing — the outbox worker picks the row up.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from sqlmodel import Session, select

from ..backends.base import DeliveryResult, OutboundMail
from ..contract import AttachmentIn, CheckSendOut, SendResult
from ..errors import Conflict, InvalidArgument
from ..store.blobs import get_blob
from ..store.tables import Bounce, IdempotencyKey, Message, Outbox, utcnow
from .anomaly import AnomalyOps
from .base import AgentRef
from .gate import GateOps, error_for
from .outgoing import Outgoing, addresses, request_hash

log = logging.getLogger(__name__)

RETRY_BASE_S = 30
RETRY_MAX_S = 3600
GIVE_UP_AFTER = timedelta(hours=24)
STALE_SENDING = timedelta(minutes=10)


class SendOps(GateOps, AnomalyOps):
    # --- public capabilities ----------------------------------------------------------------

    def send_message(
        self, agent: AgentRef, inbox_id: str, to: list[str] | str, subject: str, text: str | None = None,
        html: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
        attachments: list[AttachmentIn] | None = None, idempotency_key: str | None = None,
    ) -> SendResult:
        out = Outgoing(inbox_id, addresses(to, "to"), addresses(cc, "cc"), addresses(bcc, "bcc"), subject, text, html, attachments or [])
        return self._submit(agent, out, idempotency_key)

    def reply(
        self, agent: AgentRef, message_id: str, text: str | None = None, html: str | None = None,
        reply_all: bool = False, attachments: list[AttachmentIn] | None = None, idempotency_key: str | None = None,
    ) -> SendResult:
        with self.db.read() as s:
            orig, inbox = self._message(s, agent, message_id)
            out = self._reply_outgoing(orig, inbox, reply_all)
        out.text, out.html, out.attachments = text, html, attachments or []
        return self._submit(agent, out, idempotency_key)

    def forward(
        self, agent: AgentRef, message_id: str, to: list[str] | str, text: str | None = None,
        cc: list[str] | None = None, idempotency_key: str | None = None,
    ) -> SendResult:
        with self.db.read() as s:
            orig, inbox = self._message(s, agent, message_id)
            out = self._forward_outgoing(s, orig, inbox, addresses(to, "to"), text)
        out.cc = addresses(cc, "cc")
        return self._submit(agent, out, idempotency_key)

    def check_send(
        self, agent: AgentRef, inbox_id: str, to: list[str] | str, subject: str, text: str | None = None,
        html: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
        attachments: list[AttachmentIn] | None = None,
    ) -> CheckSendOut:
        """The same decision a real send would meet now, with nothing consumed: a read-only
        transaction, no audit record, no counters touched."""
        out = Outgoing(inbox_id, addresses(to, "to"), addresses(cc, "cc"), addresses(bcc, "bcc"), subject, text, html, attachments or [])
        prep = self._prepare(agent, out)
        with self.db.read() as s:
            d = self._decide(s, agent, out, prep)
        if d.allowed and (problem := self.backend.unroutable(out.recipients)):
            return CheckSendOut(decision="deny", rule="backend.route", reason=problem, code="backend_unavailable")
        return CheckSendOut(decision=d.action, rule=d.rule, reason=d.reason, code=d.code)

    # --- the one path every send takes ------------------------------------------------------

    def _submit(self, agent: AgentRef, out: Outgoing, idempotency_key: str | None) -> SendResult:
        if idempotency_key is not None and not (1 <= len(idempotency_key) <= 200):
            raise InvalidArgument("idempotency_key must be 1-200 characters")
        req_hash = request_hash(out)
        if idempotency_key and (earlier := self._idempotent_result(agent, idempotency_key, req_hash)):
            return earlier
        prep = self._prepare(agent, out)
        with self.db.write() as s:
            if idempotency_key and (earlier := self._idempotent_result(agent, idempotency_key, req_hash, s)):
                return earlier
            verdict = self._gate(s, agent, out, prep)
            if verdict.result is not None and idempotency_key:
                s.add(IdempotencyKey(agent_id=agent.id, key=idempotency_key, request_hash=req_hash, result=verdict.result.model_dump_json()))
        if verdict.result is None:
            raise error_for(verdict.decision)
        if verdict.outbox_id is None:  # held for approval
            return verdict.result
        self.notifier.notify(prep.inbox.id)
        result = verdict.result.model_copy(update=self._status_fields(self._dispatch(verdict.outbox_id)))
        if idempotency_key:
            with self.db.write() as s:
                row = s.get(IdempotencyKey, (agent.id, idempotency_key))
                if row:
                    row.result = result.model_dump_json()
                    s.add(row)
        return result

    @staticmethod
    def _status_fields(d: DeliveryResult | None) -> dict[str, object]:
        if d is None:
            return {"status": "queued"}
        status = "queued" if d.temporary else "sent"
        return {"status": status, "delivered": d.delivered, "deferred": d.temporary, "failed": d.permanent}

    def _idempotent_result(self, agent: AgentRef, key: str, req_hash: str, s: Session | None = None) -> SendResult | None:
        def look(sess: Session) -> SendResult | None:
            row = sess.get(IdempotencyKey, (agent.id, key))
            if row is None:
                return None
            if row.request_hash != req_hash:
                raise Conflict(f"idempotency_key {key!r} was already used for a different message")
            return SendResult.model_validate_json(row.result)

        if s is not None:
            return look(s)
        with self.db.read() as sess:
            return look(sess)

    # --- the outbox -------------------------------------------------------------------------

    def _dispatch(self, outbox_id: str) -> DeliveryResult | None:
        """Hand one queued outbox row to the backend, if no other worker has claimed it."""
        with self.db.write() as s:
            box = s.get(Outbox, outbox_id)
            if box is None or box.status != "queued":
                return None
            box.status, box.attempts = "sending", box.attempts + 1
            box.next_attempt_at = utcnow()  # when the claim was made: how stale-claim recovery ages it
            s.add(box)
            msg = s.get(Message, box.message_pk)
            assert msg is not None
            raw = get_blob(s, msg.raw_sha256)
            pending = json.loads(box.recipients)
        try:
            result = self.backend.deliver(OutboundMail(box.envelope_from, pending, raw, msg.message_id_header or "", box.attempts))
        except Exception as e:  # a backend bug must not strand the row in 'sending'
            log.exception("delivery of %s failed", outbox_id)
            result = DeliveryResult(temporary={r: f"backend error: {e}" for r in pending})
        self._record_delivery(outbox_id, result)
        return result

    def _record_delivery(self, outbox_id: str, result: DeliveryResult) -> None:
        now = utcnow()
        with self.db.write() as s:
            box = s.get(Outbox, outbox_id)
            msg = s.get(Message, box.message_pk) if box else None
            if box is None or msg is None:
                return
            if result.temporary and now - box.created_at < GIVE_UP_AFTER:
                box.status = "queued"
                box.recipients = json.dumps(sorted(result.temporary))
                box.next_attempt_at = now + timedelta(seconds=min(RETRY_BASE_S * 2 ** (box.attempts - 1), RETRY_MAX_S))
                box.last_error = "; ".join(f"{r}: {e}" for r, e in result.temporary.items())
                msg.status = "queued"
            else:
                failed = {**result.permanent, **result.temporary}
                for rcpt, reply in result.permanent.items():  # refused outright: counts as a bounce
                    s.add(Bounce(agent_id=box.agent_id, message_pk=msg.pk, recipient=rcpt, status=reply[:40], permanent=True))  # type: ignore[arg-type]
                if result.permanent:
                    s.flush()
                    self._pause_on_bounce_rate(s, box.agent_id)
                box.status = "failed" if failed and not result.delivered else "sent"
                box.sent_at = now
                box.last_error = "; ".join(f"{r}: {e}" for r, e in failed.items()) or None
                msg.status = "failed" if box.status == "failed" else "sent"
            s.add(box)
            s.add(msg)

    def _recover_stale(self, outbox_id: str) -> None:
        """A row left in 'sending' by a crash: ask the backend what provably went out before
        handing the rest over again."""
        with self.db.read() as s:
            box = s.get(Outbox, outbox_id)
            msg = s.get(Message, box.message_pk) if box else None
            if box is None or msg is None or box.status != "sending":
                return
            mail = OutboundMail(box.envelope_from, json.loads(box.recipients), get_blob(s, msg.raw_sha256), msg.message_id_header or "")
            first_attempt = box.attempts <= 1  # else an earlier attempt may have reached others
        done = set(self.backend.confirm_delivered(mail, first_attempt=first_attempt))
        rest = [r for r in mail.recipients if r not in done]
        with self.db.write() as s:
            box = s.get(Outbox, outbox_id)
            if box is None or box.status != "sending":
                return
            if rest:
                box.status, box.recipients = "queued", json.dumps(rest)
                s.add(box)
        if not rest:
            self._record_delivery(outbox_id, DeliveryResult(delivered=sorted(done)))

    def dispatch_due(self, limit: int = 50) -> int:
        """Retry queued rows whose time has come, and rows stranded in 'sending' by a crash; for
        those, the backend first says which recipients provably got the message (see
        ``confirm_delivered``), so only the rest are handed over again."""
        now = utcnow()
        with self.db.read() as s:
            stale = [b.id for b in s.exec(select(Outbox).where(Outbox.status == "sending")).all() if now - b.next_attempt_at > STALE_SENDING]
        for outbox_id in stale:
            self._recover_stale(outbox_id)
        with self.db.write() as s:
            due = list(s.exec(select(Outbox.id).where(Outbox.status == "queued", Outbox.next_attempt_at <= now).limit(limit)).all())
        for outbox_id in due:
            self._dispatch(outbox_id)
        return len(due)
