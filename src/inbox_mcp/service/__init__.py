"""The one place that decides. Every capability is one method of ``Service``; MCP tools, the CLI
and (later) REST routes are thin adapters around it. The class is assembled from one mixin per
concern so that each file stays small and named for what it holds."""

from __future__ import annotations

import shutil

from ..backends.base import MailBackend
from ..policy.loader import BUNDLED_DEFAULT, PolicyError, PolicyStore
from ..settings import Settings
from ..store.db import Database
from .approvals import ApprovalOps
from .base import AgentRef
from .drafts import DraftOps
from .identity import IdentityOps
from .imap_sync import ImapSyncOps
from .reading import ReadingOps
from .waiting import WaitOps


class Service(IdentityOps, ImapSyncOps, ReadingOps, DraftOps, ApprovalOps, WaitOps):
    pass


def ensure_policy_dir(settings: Settings) -> None:
    """A new home gets a copy of the shipped default policy to edit. An explicitly configured
    INBOX_MCP_POLICY_DIR is never written to: if it lacks default.toml, sends are denied."""
    if settings.policy_dir is None and not (settings.policies / "default.toml").exists():
        settings.policies.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUNDLED_DEFAULT, settings.policies / "default.toml")


def build_service(settings: Settings, *, listen: bool = True, backend: MailBackend | None = None) -> Service:
    """Open the database (migrating an empty one), load policy, and start the backend."""
    from ..backends.local import LocalBackend

    db = Database(settings.url)
    if db.needs_upgrade():
        db.upgrade()
    ensure_policy_dir(settings)
    policies = PolicyStore(settings.policies, settings.domain)
    service: Service
    if backend is None and settings.backend == "smtp_imap":
        from ..backends.smtp_imap import SmtpImapBackend

        holder: list[Service] = []
        backend = SmtpImapBackend(settings, inbox_addresses=lambda: holder[0].imap_inboxes(), sync=listen)
        service = Service(settings, db, backend, policies)
        holder.append(service)
        backend.start(service)
        return service
    if backend is None:
        inbound = policies.effective("default", "")
        max_inbound = inbound.inbound.max_message_bytes if not isinstance(inbound, PolicyError) else 26_214_400
        backend = LocalBackend(settings, max_inbound_bytes=max_inbound, listen=listen)
    service = Service(settings, db, backend, policies)
    backend.start(service)
    return service


__all__ = ["AgentRef", "Service", "build_service"]
