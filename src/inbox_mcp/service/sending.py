"""The send gate. send_message, reply, forward and send_draft all end in ``_submit``: validate,
compose, ask the policy engine, and — in one write transaction — store the sent copy, count the
send and queue it in the durable outbox. Only then is the message handed to the backend.

SQLite write transactions are ``BEGIN IMMEDIATE``, so counting the sends in a window and
recording this one cannot interleave with another process doing the same: caps hold exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session, func, select

from ..backends.base import DeliveryResult, OutboundMail
from ..contract import AttachmentIn, CheckSendOut, SendResult
from ..errors import (
    AgentPaused,
    BackendUnavailable,
    Conflict,
    InboxError,
    InvalidArgument,
    PolicyDenied,
    QuotaExceeded,
    RateLimited,
)
from ..mail.compose import compose_message, validate_address
from ..mail.parse import parse_message
from ..mail.subjects import forward_subject, reply_subject
from ..policy.engine import Counters, Decision, SendRequest, decide
from ..policy.loader import PolicyError
from ..store.blobs import get_blob
from ..store.ids import new_id
from ..store.messages import insert_message
from ..store.tables import Agent, Contact, IdempotencyKey, Inbox, Message, Outbox, SendEvent, Thread, utcnow
from .attachments_in import AttachmentResolver
from .base import AgentRef
from .inbound import to_new_message
from .views import attachments_of

log = logging.getLogger(__name__)

MAX_SUBJECT_CHARS = 998
RETRY_BASE_S = 30
RETRY_MAX_S = 3600
GIVE_UP_AFTER = timedelta(hours=24)
STALE_SENDING = timedelta(minutes=10)


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


def _addresses(values: list[str] | str | None, field_name: str) -> list[str]:
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


def _error_for(decision: Decision) -> InboxError:
    cls = {
        "policy_denied": PolicyDenied, "quota_exceeded": QuotaExceeded, "agent_paused": AgentPaused,
    }.get(decision.code or "policy_denied", PolicyDenied)
    if decision.code == "rate_limited":
        return RateLimited(decision.reason, decision.retry_after_s)
    return cls(decision.reason)


def _request_hash(out: Outgoing) -> str:
    payload = json.dumps(
        [out.inbox_id, out.to, out.cc, out.bcc, out.subject, out.text, out.html,
         [a.model_dump() for a in out.attachments], out.in_reply_to],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class SendOps(AttachmentResolver):
    # --- public capabilities ----------------------------------------------------------------

    def send_message(
        self, agent: AgentRef, inbox_id: str, to: list[str] | str, subject: str, text: str | None = None,
        html: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
        attachments: list[AttachmentIn] | None = None, idempotency_key: str | None = None,
    ) -> SendResult:
        out = Outgoing(inbox_id, _addresses(to, "to"), _addresses(cc, "cc"), _addresses(bcc, "bcc"), subject, text, html, attachments or [])
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
            out = self._forward_outgoing(s, orig, inbox, _addresses(to, "to"), text)
        out.cc = _addresses(cc, "cc")
        return self._submit(agent, out, idempotency_key)

    def check_send(
        self, agent: AgentRef, inbox_id: str, to: list[str] | str, subject: str, text: str | None = None,
        html: str | None = None, cc: list[str] | None = None, bcc: list[str] | None = None,
        attachments: list[AttachmentIn] | None = None,
    ) -> CheckSendOut:
        out = Outgoing(inbox_id, _addresses(to, "to"), _addresses(cc, "cc"), _addresses(bcc, "bcc"), subject, text, html, attachments or [])
        _inbox, raw, _mid = self._compose(agent, out)
        with self.db.read() as s:
            d = self._decide(s, agent, out, len(raw))
        if d.allowed and (problem := self.backend.unroutable(out.to + out.cc + out.bcc)):
            return CheckSendOut(decision="deny", rule="backend.route", reason=problem, code="backend_unavailable")
        return CheckSendOut(decision=d.action, rule=d.rule, reason=d.reason, code=d.code)

    # --- building replies and forwards ------------------------------------------------------

    def _reply_outgoing(self, orig: Message, inbox: Inbox, reply_all: bool) -> Outgoing:
        me = inbox.address
        if orig.direction == "out":
            to = json.loads(orig.to_addrs)
            cc = json.loads(orig.cc_addrs) if reply_all else []
        else:
            to = json.loads(orig.reply_to) or ([orig.from_addr] if orig.from_addr else [])
            cc = [a for a in json.loads(orig.to_addrs) + json.loads(orig.cc_addrs) if a != me] if reply_all else []
        if not to:
            raise InvalidArgument(f"message {orig.id} has no sender address to reply to")
        cc = [a for a in dict.fromkeys(cc) if a not in to]
        refs = [r for r in orig.references.split() if r]
        if orig.message_id_header:
            refs.append(orig.message_id_header)
        return Outgoing(
            inbox.id, to, cc, [], reply_subject(orig.subject),
            in_reply_to=orig.message_id_header, references=refs[-20:],
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

    # --- the gate ---------------------------------------------------------------------------

    def _compose(self, agent: AgentRef, out: Outgoing) -> tuple[Inbox, bytes, str]:
        if not out.to and not out.cc and not out.bcc:
            raise InvalidArgument("to is empty: a message needs at least one recipient")
        if not isinstance(out.subject, str) or len(out.subject) > MAX_SUBJECT_CHARS:
            raise InvalidArgument(f"subject must be a string of at most {MAX_SUBJECT_CHARS} characters")
        max_bytes = self._max_bytes(agent)
        with self.db.read() as s:
            inbox = self._inbox(s, agent, out.inbox_id)
            files = self.resolve_attachments(s, agent, out.attachments, max_bytes)
        composed = compose_message(
            from_addr=inbox.address, from_name=inbox.display_name, to=out.to, cc=out.cc, subject=out.subject,
            text=out.text, html=out.html, attachments=files, in_reply_to=out.in_reply_to,
            references=out.references, message_id_domain=self.settings.domain,
        )
        return inbox, composed.raw, composed.message_id

    def _max_bytes(self, agent: AgentRef) -> int:
        policy = self.policies.effective(agent.tenant, agent.name)
        return policy.caps.max_message_bytes if not isinstance(policy, PolicyError) else 0

    def _counters(self, s: Session, agent_id: str) -> Counters:
        now = utcnow()

        def window(seconds: int) -> tuple[int, float]:
            since = now - timedelta(seconds=seconds)
            n, oldest = s.exec(
                select(func.count(), func.min(SendEvent.at)).where(SendEvent.agent_id == agent_id, SendEvent.at > since)
            ).one()
            frees = (oldest + timedelta(seconds=seconds) - now).total_seconds() if oldest else 0.0
            return n, max(frees, 1.0)

        (m, mf), (h, hf), (d, df) = window(60), window(3600), window(86400)
        return Counters(m, h, d, mf, hf, df)

    def _decide(self, s: Session, agent: AgentRef, out: Outgoing, size: int) -> Decision:
        row = s.get(Agent, agent.id)
        assert row is not None
        policy = self.policies.effective(agent.tenant, agent.name)
        req = SendRequest(agent.name, row.verified, row.paused, out.to + out.cc + out.bcc, size)
        return decide(policy, req, self._counters(s, agent.id), self._policy_source(agent))

    def _policy_source(self, agent: AgentRef) -> str:
        layers = [p for p in self.policies.layers(agent.tenant, agent.name) if p.exists()]
        return " + ".join(str(p.relative_to(self.policies.directory.parent)) for p in layers) or "policies/default.toml"

    def _submit(self, agent: AgentRef, out: Outgoing, idempotency_key: str | None) -> SendResult:
        if idempotency_key is not None and not (1 <= len(idempotency_key) <= 200):
            raise InvalidArgument("idempotency_key must be 1-200 characters")
        req_hash = _request_hash(out)
        if idempotency_key and (earlier := self._idempotent_result(agent, idempotency_key, req_hash)):
            return earlier
        inbox, raw, mid = self._compose(agent, out)
        recipients = out.to + out.cc + out.bcc
        parsed = parse_message(raw)
        with self.db.write() as s:
            if idempotency_key and (earlier := self._idempotent_result(agent, idempotency_key, req_hash, s)):
                return earlier
            decision = self._decide(s, agent, out, len(raw))
            problem = self.backend.unroutable(recipients) if decision.allowed else None
            if not decision.allowed:
                error = _error_for(decision)
            elif problem:
                # Checked after policy (a denial says more) and before anything is stored.
                error = BackendUnavailable(problem)
            else:
                error = None
                new = to_new_message(parsed, raw, inbox.id, "out", ["sent"])
                new.bcc, new.status = out.bcc, "queued"
                msg = insert_message(s, new)
                thread = s.get(Thread, msg.thread_pk)
                box = Outbox(
                    id=new_id("out"), agent_id=agent.id, inbox_id=inbox.id, message_pk=msg.pk,  # type: ignore[arg-type]
                    envelope_from=inbox.address, recipients=json.dumps(recipients),
                )
                s.add(box)
                s.add(SendEvent(agent_id=agent.id, inbox_id=inbox.id, recipients=len(recipients)))
                for r in recipients:
                    if s.get(Contact, (agent.id, r)) is None:
                        s.add(Contact(agent_id=agent.id, address=r))
                result = SendResult(status="queued", message_id=msg.id, thread_id=thread.id if thread else None)
                if idempotency_key:
                    s.add(IdempotencyKey(agent_id=agent.id, key=idempotency_key, request_hash=req_hash, result=result.model_dump_json()))
        if error is not None:
            raise error
        self.notifier.notify(inbox.id)
        delivery = self._dispatch(box.id)
        result = result.model_copy(update=self._status_fields(delivery))
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
            result = self.backend.deliver(OutboundMail(box.envelope_from, pending, raw, msg.message_id_header or ""))
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
                box.status = "failed" if failed and not result.delivered else "sent"
                box.sent_at = now
                box.last_error = "; ".join(f"{r}: {e}" for r, e in failed.items()) or None
                msg.status = "failed" if box.status == "failed" else "sent"
            s.add(box)
            s.add(msg)

    def dispatch_due(self, limit: int = 50) -> int:
        """Retry queued rows whose time has come, and rows stranded in 'sending' by a crash.
        Local delivery is idempotent (a recipient inbox never stores the same bytes twice), so
        re-sending a stranded row cannot duplicate mail."""
        now = utcnow()
        with self.db.write() as s:
            for box in s.exec(select(Outbox).where(Outbox.status == "sending")).all():
                if now - box.next_attempt_at > STALE_SENDING:
                    box.status = "queued"
                    s.add(box)
            due = list(
                s.exec(
                    select(Outbox.id).where(Outbox.status == "queued", Outbox.next_attempt_at <= now).limit(limit)
                ).all()
            )
        for outbox_id in due:
            self._dispatch(outbox_id)
        return len(due)



