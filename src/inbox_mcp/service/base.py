"""What every part of the service shares: settings, database, policy, backend, and the lookups
that enforce isolation. An agent asking for anything that is not its own gets ``not_found`` —
never "forbidden" — so ids of other tenants' objects cannot be probed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from ..backends.base import MailBackend
from ..errors import NotFound
from ..policy.loader import PolicyStore
from ..settings import Settings
from ..store.db import Database
from ..store.tables import Agent, Draft, Inbox, Message, Tenant, Thread
from .notify import Notifier


@dataclass(frozen=True)
class AgentRef:
    id: str
    name: str
    tenant_id: str
    tenant: str


class ServiceBase:
    def __init__(self, settings: Settings, db: Database, backend: MailBackend, policies: PolicyStore) -> None:
        self.settings = settings
        self.db = db
        self.backend = backend
        self.policies = policies
        self.notifier = Notifier()

    # --- isolation-checked lookups ----------------------------------------------------------

    def _inbox(self, s: Session, agent: AgentRef, inbox_id: str) -> Inbox:
        inbox = s.get(Inbox, inbox_id) if isinstance(inbox_id, str) else None
        if inbox is None or inbox.agent_id != agent.id:
            raise NotFound(f"inbox {inbox_id!r} does not exist")
        return inbox

    def _message(self, s: Session, agent: AgentRef, message_id: str) -> tuple[Message, Inbox]:
        msg = s.exec(select(Message).where(Message.id == message_id)).first()
        inbox = s.get(Inbox, msg.inbox_id) if msg else None
        if msg is None or inbox is None or inbox.agent_id != agent.id:
            raise NotFound(f"message {message_id!r} does not exist")
        return msg, inbox

    def _thread(self, s: Session, agent: AgentRef, thread_id: str) -> Thread:
        thread = s.exec(select(Thread).where(Thread.id == thread_id)).first()
        inbox = s.get(Inbox, thread.inbox_id) if thread else None
        if thread is None or inbox is None or inbox.agent_id != agent.id:
            raise NotFound(f"thread {thread_id!r} does not exist")
        return thread

    def _draft(self, s: Session, agent: AgentRef, draft_id: str) -> tuple[Draft, Inbox]:
        draft = s.get(Draft, draft_id)
        inbox = s.get(Inbox, draft.inbox_id) if draft else None
        if draft is None or inbox is None or inbox.agent_id != agent.id:
            raise NotFound(f"draft {draft_id!r} does not exist")
        return draft, inbox

    def agent_ref(self, s: Session, row: Agent) -> AgentRef:
        tenant = s.get(Tenant, row.tenant_id)
        return AgentRef(row.id, row.name, row.tenant_id, tenant.name if tenant else "")
