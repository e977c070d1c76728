"""Tenants, agents and their keys, inboxes.

Agent keys are 192 random bits, shown once. We store a SHA-256 of the key, not a slow password
hash: the key is random and long, so a fast hash is not brute-forceable, and it is checked on
every HTTP request where argon2's deliberate slowness would cost ~50 ms a call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from ..contract import InboxList, InboxOut
from ..errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    Unauthenticated,
)
from ..mail.compose import check_header_value
from ..policy import audit
from ..policy.loader import PolicyError
from ..store.ids import new_id
from ..store.tables import Agent, Inbox, Tenant
from .base import AgentRef, ServiceBase

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"{kind} name {name!r} must be 1-63 characters of a-z, 0-9, '.', '_', '-'")
    return name


def inbox_out(inbox: Inbox) -> InboxOut:
    return InboxOut(inbox_id=inbox.id, address=inbox.address, display_name=inbox.display_name, created_at=inbox.created_at)


class IdentityOps(ServiceBase):
    def create_tenant(self, name: str) -> str:
        _check_name("tenant", name)
        with self.db.write() as s:
            existing = s.exec(select(Tenant).where(Tenant.name == name)).first()
            if existing:
                return existing.id
            tenant = Tenant(id=new_id("ten"), name=name)
            s.add(tenant)
            return tenant.id

    def create_agent(self, name: str, tenant: str = "default") -> tuple[AgentRef, str]:
        """Returns the agent and its key. The key is not stored and cannot be shown again."""
        _check_name("agent", name)
        tenant_id = self.create_tenant(tenant)
        prefix = secrets.token_hex(6)
        key = f"imk_{prefix}_{secrets.token_urlsafe(24)}"
        try:
            with self.db.write() as s:
                if s.exec(select(Agent).where(Agent.name == name)).first():
                    raise Conflict(f"agent {name!r} already exists")
                row = Agent(id=new_id("agt"), tenant_id=tenant_id, name=name, key_prefix=prefix, key_hash=_hash_key(key))
                s.add(row)
                s.flush()
                ref = self.agent_ref(s, row)
        except IntegrityError:
            raise Conflict(f"agent {name!r} already exists") from None
        return ref, key

    def list_agents(self) -> list[dict[str, object]]:  # noqa: D401
        with self.db.read() as s:
            rows = s.exec(select(Agent, Tenant).join(Tenant).order_by(Agent.name)).all()
            counts = dict(s.exec(select(Inbox.agent_id, func.count()).group_by(Inbox.agent_id)).all())
        return [
            {
                "name": a.name, "tenant": t.name, "verified": a.verified, "paused": a.paused, "paused_reason": a.paused_reason,
                "inboxes": counts.get(a.id, 0), "created_at": a.created_at.isoformat(),
            }
            for a, t in rows
        ]

    def authenticate(self, key: str | None) -> AgentRef:
        bad = Unauthenticated("missing or invalid agent key")
        if not key or not key.startswith("imk_") or key.count("_") < 2:
            raise bad
        prefix = key.split("_", 2)[1]
        with self.db.read() as s:
            row = s.exec(select(Agent).where(Agent.key_prefix == prefix)).first()
            if row is None or not hmac.compare_digest(row.key_hash, _hash_key(key)):
                raise bad
            return self.agent_ref(s, row)

    def agent_by_name(self, name: str) -> AgentRef:
        with self.db.read() as s:
            row = s.exec(select(Agent).where(Agent.name == name)).first()
            if row is None:
                raise NotFound(f"agent {name!r} does not exist")
            return self.agent_ref(s, row)

    def set_agent_state(self, name: str, action: str, by: str) -> None:
        """verify | pause | resume, by an operator: takes effect at once in every process (the
        state lives in the database) and is audited."""
        changes = {
            "verify": {"verified": True},
            "pause": {"paused": True, "paused_reason": f"paused by {by}"},
            "resume": {"paused": False, "paused_reason": None},
        }[action]
        with self.db.write() as s:
            row = s.exec(select(Agent).where(Agent.name == name)).first()
            if row is None:
                raise NotFound(f"agent {name!r} does not exist")
            for k, v in changes.items():
                setattr(row, k, v)
            s.add(row)
            audit.append(s, actor=f"operator:{by}", action=f"agent.{action}", target=name, decision=action)

    # --- inboxes ----------------------------------------------------------------------------

    def provision_inbox(self, agent: AgentRef, username: str | None = None, display_name: str | None = None) -> InboxOut:
        if display_name is not None:
            display_name = check_header_value(display_name, "display_name").strip() or None
            if display_name and len(display_name) > 200:
                raise InvalidArgument("display_name is longer than 200 characters")
        if username is None:
            username = f"{agent.name.replace('_', '-')}-{secrets.token_hex(3)}"
        username = username.strip().lower()
        if not USERNAME_RE.match(username):
            raise InvalidArgument(
                f"username {username!r} must be 1-64 characters of a-z, 0-9, '.', '_', '+', '-', "
                "starting and ending with a letter or digit"
            )
        address = f"{username}@{self.settings.domain}"
        policy = self.policies.effective(agent.tenant, agent.name)
        if isinstance(policy, PolicyError):
            raise PolicyDenied(str(policy))
        try:
            with self.db.write() as s:
                owned = s.exec(select(func.count()).select_from(Inbox).where(Inbox.agent_id == agent.id)).one()
                if owned >= policy.caps.max_inboxes:
                    raise QuotaExceeded(
                        f"agent {agent.name} already has {owned} inboxes; caps.max_inboxes = {policy.caps.max_inboxes}"
                    )
                if s.exec(select(Inbox).where(Inbox.address == address)).first():
                    raise Conflict(f"address {address} is taken: choose another username")
                # The mailbox exists on the mail servers before the inbox is visible: a failed
                # provisioning rolls the inbox back instead of leaving one that cannot receive.
                self.backend.provision(address)
                inbox = Inbox(id=new_id("inb"), agent_id=agent.id, address=address, display_name=display_name)
                s.add(inbox)
        except IntegrityError:
            raise Conflict(f"address {address} is taken: choose another username") from None
        watch = getattr(self.backend, "watch", None)
        if watch is not None:
            watch(inbox.id, inbox.address)
        return inbox_out(inbox)

    def list_inboxes(self, agent: AgentRef) -> InboxList:
        with self.db.read() as s:
            rows = s.exec(select(Inbox).where(Inbox.agent_id == agent.id).order_by(Inbox.created_at)).all()
        return InboxList(inboxes=[inbox_out(i) for i in rows])
