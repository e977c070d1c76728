"""The tables. Public ids are random strings with a type prefix (``msg_…``); integer ``pk`` columns
exist for ordering, keyset pagination and the FTS5 rowid, and never leave the process.

Changing a table means adding an alembic revision in ``store/migrations/versions/``; a test
compares the migrated schema with these models.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tenant(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class Agent(SQLModel, table=True):
    id: str = Field(primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    name: str = Field(unique=True)
    # The key is shown once; we keep its public prefix for lookup and a SHA-256 of the whole key.
    key_prefix: str = Field(unique=True)
    key_hash: str
    verified: bool = False
    paused: bool = False
    paused_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Inbox(SQLModel, table=True):
    id: str = Field(primary_key=True)
    agent_id: str = Field(foreign_key="agent.id", index=True)
    address: str = Field(unique=True)
    display_name: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Thread(SQLModel, table=True):
    __table_args__ = (Index("ix_thread_inbox_last", "inbox_id", "last_message_at", "pk"),)
    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    inbox_id: str = Field(foreign_key="inbox.id")
    subject: str = ""
    subject_key: str = Field(default="", index=True)
    message_count: int = 0
    unread_count: int = 0
    last_message_at: datetime = Field(default_factory=utcnow)
    snippet: str = ""
    participants: str = "[]"  # JSON list of addresses, most recent sender first


class ThreadLabel(SQLModel, table=True):
    """How many messages of a thread carry a label: lets list_threads filter by label with an
    index instead of scanning messages."""

    __table_args__ = (Index("ix_threadlabel_label", "label", "thread_pk"),)
    thread_pk: int = Field(foreign_key="thread.pk", primary_key=True)
    label: str = Field(primary_key=True)
    count: int = 0


class Message(SQLModel, table=True):
    __table_args__ = (
        Index("ix_message_inbox_pk", "inbox_id", "pk"),
        Index("ix_message_thread", "thread_pk", "pk"),
        Index("ix_message_inbox_msgid", "inbox_id", "message_id_header"),
        Index("ix_message_inbox_raw", "inbox_id", "raw_sha256"),
        Index("ix_message_inbox_irt", "inbox_id", "in_reply_to"),
    )
    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    inbox_id: str = Field(foreign_key="inbox.id")
    thread_pk: int = Field(foreign_key="thread.pk")
    direction: str = "in"  # in | out
    message_id_header: str | None = None
    in_reply_to: str | None = None
    references: str = ""  # space-separated msg-ids
    subject: str = ""
    from_addr: str | None = None
    from_name: str | None = None
    to_addrs: str = "[]"  # JSON lists of bare addresses
    cc_addrs: str = "[]"
    bcc_addrs: str = "[]"  # only on our own sent copies
    reply_to: str = "[]"
    date: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    text: str = ""
    html: str | None = None
    snippet: str = ""
    size: int = 0
    raw_sha256: str = Field(foreign_key="blob.sha256")
    parse_ok: bool = True
    auto_submitted: bool = False
    has_attachments: bool = False
    auth_results: str = "{}"  # JSON {spf, dkim, dmarc}
    status: str | None = None  # outbound: queued | sent | failed


class MessageLabel(SQLModel, table=True):
    __table_args__ = (Index("ix_messagelabel_label", "label", "message_pk"),)
    message_pk: int = Field(foreign_key="message.pk", primary_key=True)
    label: str = Field(primary_key=True)


class Blob(SQLModel, table=True):
    """Content-addressed bytes: raw messages and attachments, each stored once."""

    sha256: str = Field(primary_key=True)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Attachment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("message_pk", "position"),)
    id: str = Field(primary_key=True)
    message_pk: int = Field(foreign_key="message.pk", index=True)
    position: int
    filename: str
    content_type: str
    size: int
    sha256: str = Field(foreign_key="blob.sha256")
    content_id: str | None = None
    inline: bool = False


class Draft(SQLModel, table=True):
    id: str = Field(primary_key=True)
    inbox_id: str = Field(foreign_key="inbox.id", index=True)
    to_addrs: str = "[]"
    cc_addrs: str = "[]"
    bcc_addrs: str = "[]"
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: str = "[]"  # JSON list of attachment specs, resolved at send time
    in_reply_to: str | None = None  # our message id the draft answers
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Outbox(SQLModel, table=True):
    """A message on its way out. Written in the same transaction as the sent copy, so a crash
    between accepting a send and handing it to the backend loses nothing: the row is retried."""

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)
    id: str = Field(primary_key=True)
    agent_id: str = Field(foreign_key="agent.id", index=True)
    inbox_id: str = Field(foreign_key="inbox.id")
    message_pk: int = Field(foreign_key="message.pk")
    envelope_from: str
    recipients: str  # JSON list
    status: str = "queued"  # queued | sending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class SendEvent(SQLModel, table=True):
    """One row per message that actually went out: what send caps count (rolling windows), and
    what duplicate-send loop protection compares (body digest per recipient)."""

    __table_args__ = (
        Index("ix_sendevent_agent_at", "agent_id", "at"),
        Index("ix_sendevent_inbox_at", "inbox_id", "at"),
    )
    pk: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(foreign_key="agent.id")
    inbox_id: str
    at: datetime = Field(default_factory=utcnow)
    recipients: int = 1
    new_recipients: int = 0
    addresses: str = "[]"  # JSON list
    body_digest: str = ""


class Approval(SQLModel, table=True):
    """A send held for a human. The composed bytes are kept, so what is approved is exactly what
    was held; nothing is stored as sent until approval."""

    __table_args__ = (Index("ix_approval_status", "status", "expires_at"),)
    id: str = Field(primary_key=True)
    agent_id: str = Field(foreign_key="agent.id", index=True)
    inbox_id: str = Field(foreign_key="inbox.id")
    status: str = "pending"  # pending | approved | rejected | expired
    rule: str
    reason: str
    raw_sha256: str = Field(foreign_key="blob.sha256")
    request: str  # JSON: recipients, to/cc/bcc, subject, body digest, size
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    message_id: str | None = None  # our public message id once sent


class Bounce(SQLModel, table=True):
    """A delivery-status notification that refers to one of an agent's own messages."""

    __table_args__ = (Index("ix_bounce_agent_at", "agent_id", "at"),)
    pk: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(foreign_key="agent.id")
    message_pk: int = Field(foreign_key="message.pk")
    recipient: str = ""
    status: str | None = None
    permanent: bool = True
    at: datetime = Field(default_factory=utcnow)


class AuditRecord(SQLModel, table=True):
    """Append-only and SHA-256 hash-chained: each record's hash covers its fields and the previous
    record's hash, so an edit or deletion anywhere breaks every later link. SQLite triggers
    refuse UPDATE and DELETE; ``inbox-mcp audit verify`` finds tampering that bypassed them."""

    __tablename__ = "audit"
    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str  # agent:<name> | operator:<who> | system
    action: str  # send.decision, approval.approve, agent.pause, policy.reload, …
    target: str = ""
    decision: str = ""
    rule: str = ""
    detail: str = ""
    content_digest: str = ""
    prev_hash: str
    hash: str = Field(unique=True)


class Contact(SQLModel, table=True):
    """Addresses an agent has written to: first-contact and new-recipient rules read this."""

    agent_id: str = Field(foreign_key="agent.id", primary_key=True)
    address: str = Field(primary_key=True)
    first_at: datetime = Field(default_factory=utcnow)


class IdempotencyKey(SQLModel, table=True):
    agent_id: str = Field(foreign_key="agent.id", primary_key=True)
    key: str = Field(primary_key=True)
    request_hash: str
    result: str  # JSON of the first call's result
    created_at: datetime = Field(default_factory=utcnow)


class ImapState(SQLModel, table=True):
    """How far an inbox's IMAP mailbox has been synced: UIDs are only meaningful within one
    UIDVALIDITY, so both are kept, and the row moves in the same transaction as each stored
    message — a sync killed at any point resumes without a gap or a second copy."""

    inbox_id: str = Field(foreign_key="inbox.id", primary_key=True)
    mailbox: str = Field(primary_key=True)
    uidvalidity: int
    last_uid: int = 0
    synced_at: datetime = Field(default_factory=utcnow)


class ImapMessage(SQLModel, table=True):
    """Where a stored message lives on the IMAP server, for flag and keyword sync."""

    __table_args__ = (UniqueConstraint("inbox_id", "mailbox", "uidvalidity", "uid"),)
    message_pk: int = Field(foreign_key="message.pk", primary_key=True)
    inbox_id: str = Field(foreign_key="inbox.id")
    mailbox: str
    uidvalidity: int
    uid: int
    flags: str = ""  # space-separated flags and keywords last seen on the server
