"""Anomaly rules that act outside a send decision: a bounce (an inbound DSN, or a permanent
refusal at submission) can push an agent over anomaly.bounce_rate, pausing it at once."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, func, select

from ..policy import audit
from ..policy.engine import bounce_rate_exceeded
from ..policy.loader import PolicyError
from ..store.tables import Agent, Bounce, SendEvent, Tenant, utcnow
from .base import ServiceBase


class AnomalyOps(ServiceBase):
    def _pause_on_bounce_rate(self, s: Session, agent_id: str) -> None:
        agent = s.get(Agent, agent_id)
        if agent is None or agent.paused:
            return
        tenant = s.get(Tenant, agent.tenant_id)
        policy = self.policies.effective(tenant.name if tenant else "default", agent.name)
        if isinstance(policy, PolicyError):
            return
        since = utcnow() - timedelta(hours=24)
        sends = s.exec(select(func.count()).select_from(SendEvent).where(SendEvent.agent_id == agent_id, SendEvent.at > since)).one()
        bounces = s.exec(select(func.count()).select_from(Bounce).where(Bounce.agent_id == agent_id, Bounce.at > since)).one()
        if bounce_rate_exceeded(policy, sends, bounces):
            reason = (
                f"agent {agent.name} paused automatically: {bounces} bounces for {sends} sends in 24 h exceed "
                f"anomaly.bounce_rate = {policy.anomaly.bounce_rate}; an operator must resume it"
            )
            agent.paused, agent.paused_reason = True, reason
            s.add(agent)
            audit.append(s, actor="system", action="agent.pause", target=agent.name, decision="pause", rule="anomaly.bounce_rate", detail=reason)
