"""The send gate: everything between a prepared message and the outbox.

``_gate`` runs inside one write transaction (``BEGIN IMMEDIATE`` on SQLite): it reads the
counters, asks the engine, appends the decision to the audit log, and — when allowed — stores the
sent copy, counts the send and queues the outbox row. Because counting and recording happen
under the same write lock, concurrent sends (from threads or processes) cannot overshoot a cap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, case
from sqlmodel import Session, func, select

from ..contract import SendResult
from ..errors import (
    AgentPaused,
    BackendUnavailable,
    InboxError,
    InvalidArgument,
    PolicyDenied,
    QuotaExceeded,
    RateLimited,
)
from ..mail.parse import parse_message
from ..policy import audit
from ..policy.content import ContentItem, scan
from ..policy.engine import Counters, Decision, SendRequest, Window, decide
from ..policy.loader import PolicyError
from ..store.blobs import put_blob
from ..store.ids import new_id
from ..store.messages import insert_message
from ..store.tables import (
    Agent,
    Approval,
    Bounce,
    Contact,
    Outbox,
    SendEvent,
    Thread,
    utcnow,
)
from .base import AgentRef
from .inbound import to_new_message
from .outgoing import Outgoing, OutgoingOps, Prepared


def error_for(decision: Decision) -> InboxError:
    if decision.code == "rate_limited":
        return RateLimited(decision.reason, decision.retry_after_s)
    cls = {
        "quota_exceeded": QuotaExceeded, "agent_paused": AgentPaused, "invalid_argument": InvalidArgument,
        "backend_unavailable": BackendUnavailable,
    }
    return cls.get(decision.code or "", PolicyDenied)(decision.reason)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    result: SendResult | None  # set when the message was queued (allow) or held (hold)
    outbox_id: str | None = None


def _frees(oldest: datetime | None, seconds: int, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # Core results from SQLite come back naive (UTC)
        oldest = oldest.replace(tzinfo=UTC)
    return (oldest + timedelta(seconds=seconds) - now).total_seconds()


# The rolling-window counters, as statements built once (building them cost more than running
# them). Each window's start is a bound parameter: t60 = now - 60 s, and so on.
WINDOWS = (60, 600, 3600, 86400, 604800)
_e = SendEvent


def _in(n: int) -> ColumnElement[bool]:
    return _e.at > bindparam(f"t{n}", type_=_e.__table__.c.at.type)


def _count(n: int) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((_in(n), 1), else_=0)), 0)


def _oldest(n: int, also: ColumnElement[bool] | None = None) -> ColumnElement[datetime]:
    return func.min(case(((_in(n) & also) if also is not None else _in(n), _e.at)))


_AGENT_WINDOWS = select(
    *[_count(n) for n in (60, 3600, 86400, 600)],
    *[_oldest(n) for n in (60, 3600, 86400)],
    *[func.coalesce(func.sum(case((_in(n), _e.new_recipients), else_=0)), 0) for n in (3600, 86400, 604800)],
    *[_oldest(n, _e.new_recipients > 0) for n in (3600, 86400, 604800)],
).where(_e.agent_id == bindparam("agent"), _in(604800))
_INBOX_WINDOWS = select(
    *[_count(n) for n in (60, 3600, 86400)], *[_oldest(n) for n in (60, 3600, 86400)]
).where(_e.inbox_id == bindparam("inbox"), _in(86400))
_BOUNCES = (
    select(func.count()).select_from(Bounce)
    .where(Bounce.agent_id == bindparam("agent"), Bounce.at > bindparam("t86400", type_=Bounce.__table__.c.at.type))
)


class GateOps(OutgoingOps):
    def _counters(self, s: Session, agent_id: str, inbox_id: str) -> Counters:
        now = utcnow()
        params = {f"t{n}": now - timedelta(seconds=n) for n in WINDOWS}
        conn = s.connection()
        m, h, d, ten, om, oh, od, nh, nd, nw, onh, ond, onw = conn.execute(_AGENT_WINDOWS, {"agent": agent_id, **params}).one()
        im, ih, idy, oim, oih, oid = conn.execute(_INBOX_WINDOWS, {"inbox": inbox_id, **params}).one()
        bounces = conn.execute(_BOUNCES, {"agent": agent_id, **params}).scalar()
        return Counters(
            minute=Window(m, _frees(om, 60, now)), hour=Window(h, _frees(oh, 3600, now)), day=Window(d, _frees(od, 86400, now)),
            inbox_minute=Window(im, _frees(oim, 60, now)), inbox_hour=Window(ih, _frees(oih, 3600, now)),
            inbox_day=Window(idy, _frees(oid, 86400, now)),
            new_hour=Window(nh, _frees(onh, 3600, now)), new_day=Window(nd, _frees(ond, 86400, now)),
            new_week=Window(nw, _frees(onw, 604800, now)),
            sends_10_minutes=ten, sends_24h=d, bounces_24h=bounces,
        )

    def _policy_source(self, agent: AgentRef) -> str:
        layers = [p for p in self.policies.layers(agent.tenant, agent.name) if p.exists()]
        return " + ".join(str(p.relative_to(self.policies.directory.parent)) for p in layers) or "policies/default.toml"

    def _request(self, s: Session, agent: AgentRef, out: Outgoing, prep: Prepared, approved: bool) -> SendRequest:
        row = s.get(Agent, agent.id)
        assert row is not None
        policy = self.policies.effective(agent.tenant, agent.name)
        recipients = out.recipients
        known = set(s.exec(select(Contact.address).where(Contact.agent_id == agent.id, Contact.address.in_(recipients))).all())  # type: ignore[attr-defined]
        new = [r for r in recipients if r not in known]
        findings = []
        if not isinstance(policy, PolicyError):
            item = ContentItem(out.subject, out.text, out.html, [(f.filename, f.content_type, f.data) for f in prep.files])
            c = policy.content
            findings = scan(item, c.detectors, c.block_patterns, c.hold_patterns)
        duplicates: list[str] = []
        if not isinstance(policy, PolicyError) and policy.loops.duplicate_window_minutes:
            since = utcnow() - timedelta(minutes=policy.loops.duplicate_window_minutes)
            for addrs in s.exec(
                select(SendEvent.addresses).where(SendEvent.agent_id == agent.id, SendEvent.at > since, SendEvent.body_digest == prep.body_digest)
            ):
                duplicates += [a for a in json.loads(addrs) if a in recipients and a not in duplicates]
        return SendRequest(
            agent=agent.name, verified=row.verified, paused=row.paused, recipients=recipients, size=len(prep.raw),
            new_recipients=new, external_new=[r for r in new if r.rpartition("@")[2] != self.settings.domain],
            largest_attachment=max((len(f.data) for f in prep.files), default=0), findings=findings,
            answers_auto_submitted=out.answers_auto_submitted, duplicate_to=duplicates, approved=approved,
            paused_reason=row.paused_reason,
        )

    def _decide(self, s: Session, agent: AgentRef, out: Outgoing, prep: Prepared, approved: bool = False) -> Decision:
        req = self._request(s, agent, out, prep, approved)
        policy = self.policies.effective(agent.tenant, agent.name)
        return decide(policy, req, self._counters(s, agent.id, prep.inbox.id), self._policy_source(agent))

    def _audit_reloads(self, s: Session) -> None:
        for name, digest in self.policies.drain_reloads():
            audit.append(s, actor="system", action="policy.reload", target=name, detail=f"sha256 {digest}")

    def _gate(self, s: Session, agent: AgentRef, out: Outgoing, prep: Prepared, approval: Approval | None = None) -> Verdict:
        """Decide and act, inside the caller's write transaction."""
        self._audit_reloads(s)
        decision = self._decide(s, agent, out, prep, approved=approval is not None)
        if decision.action != "deny" and (problem := self.backend.unroutable(out.recipients)):
            # After policy (a denial says more), before anything is stored, counted or held.
            decision = Decision("deny", "backend.route", problem, "backend_unavailable")
        action = "approval.send" if approval else "send.decision"
        audit.append(
            s, actor=f"agent:{agent.name}", action=action, target=approval.id if approval else prep.inbox.address,
            decision=decision.action, rule=decision.rule, detail=decision.reason, content_digest=_sha(prep.raw),
        )
        if decision.pause:
            self._pause(s, agent, decision)
        if decision.action == "deny":
            return Verdict(decision, None)
        if decision.action == "hold":
            return Verdict(decision, self._hold(s, agent, out, prep, decision))
        result, outbox_id = self._queue(s, agent, out, prep)
        return Verdict(decision, result, outbox_id)

    def _pause(self, s: Session, agent: AgentRef, decision: Decision) -> None:
        row = s.get(Agent, agent.id)
        assert row is not None
        row.paused, row.paused_reason = True, decision.reason
        s.add(row)
        audit.append(s, actor="system", action="agent.pause", target=agent.name, decision="pause", rule=decision.rule, detail=decision.reason)

    def _hold(self, s: Session, agent: AgentRef, out: Outgoing, prep: Prepared, decision: Decision) -> SendResult:
        policy = self.policies.effective(agent.tenant, agent.name)
        hours = policy.approval.expire_after_hours if not isinstance(policy, PolicyError) else 72
        approval = Approval(
            id=new_id("apr"), agent_id=agent.id, inbox_id=prep.inbox.id, rule=decision.rule, reason=decision.reason,
            raw_sha256=put_blob(s, prep.raw), expires_at=utcnow() + timedelta(hours=hours),
            request=json.dumps({
                "to": out.to, "cc": out.cc, "bcc": out.bcc, "subject": out.subject, "body_digest": prep.body_digest,
                "answers_auto_submitted": out.answers_auto_submitted, "size": len(prep.raw),
                "attachments": [[f.filename, f.content_type, len(f.data)] for f in prep.files],
            }),
        )
        s.add(approval)
        audit.append(s, actor=f"agent:{agent.name}", action="approval.create", target=approval.id, decision="hold", rule=decision.rule, detail=decision.reason)
        return SendResult(
            status="pending_approval", message_id=None, thread_id=None, approval_id=approval.id,
            reason=f"{decision.rule}: {decision.reason}",
        )

    def _queue(self, s: Session, agent: AgentRef, out: Outgoing, prep: Prepared) -> tuple[SendResult, str]:
        recipients = out.recipients
        new = to_new_message(parse_message(prep.raw), prep.raw, prep.inbox.id, "out", ["sent"])
        new.bcc, new.status = out.bcc, "queued"
        msg = insert_message(s, new)
        thread = s.get(Thread, msg.thread_pk)
        box = Outbox(
            id=new_id("out"), agent_id=agent.id, inbox_id=prep.inbox.id, message_pk=msg.pk,  # type: ignore[arg-type]
            envelope_from=prep.inbox.address, recipients=json.dumps(recipients),
        )
        s.add(box)
        fresh = [r for r in recipients if s.get(Contact, (agent.id, r)) is None]
        for r in fresh:
            s.add(Contact(agent_id=agent.id, address=r))
        s.add(SendEvent(
            agent_id=agent.id, inbox_id=prep.inbox.id, recipients=len(recipients), new_recipients=len(fresh),
            addresses=json.dumps(recipients), body_digest=prep.body_digest,
        ))
        return SendResult(status="queued", message_id=msg.id, thread_id=thread.id if thread else None), box.id


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
