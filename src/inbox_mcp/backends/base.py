"""The one small Protocol every mail backend implements.

The service owns the whole send sequence (validate, decide, persist, outbox); a backend only
moves bytes: it says whether it can route a recipient, delivers one outbound message, and feeds
inbound mail to the service's sink. Anything a backend cannot do fails loudly with
``BackendUnavailable`` naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutboundMail:
    envelope_from: str
    recipients: list[str]
    raw: bytes
    message_id: str
    attempt: int = 1  # the outbox's attempt number: above 1, an earlier attempt may have got through


@dataclass
class DeliveryResult:
    """Per-recipient outcome. ``temporary`` failures are retried by the outbox; permanent ones
    become a delivery status the agent can read."""

    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.temporary


class InboundSink(Protocol):
    """The service side of inbound mail. A backend asks ``check_recipient`` before accepting
    (None = accept, else the SMTP reply to give) and hands every accepted message to ``receive``,
    which stores it once per recipient inbox."""

    def check_recipient(self, address: str) -> tuple[int, str] | None: ...

    def check_sender(self, address: str | None, size: int | None) -> tuple[int, str] | None: ...

    def receive(self, raw: bytes, recipients: list[str], sender: str | None, auth: dict[str, str] | None = None) -> None: ...

    def authenticate_inbound(self, raw: bytes, client_ip: str | None, helo: str | None, mail_from: str | None) -> dict[str, str]:
        """SPF/DKIM/DMARC verdicts for a message as it arrives."""
        ...

    def store_synced(self, inbox_id: str, mailbox: str, uidvalidity: int, uid: int, raw: bytes, flags: list[str]) -> None:
        """A message read from a mailbox server: stored with its server position, in one
        transaction with the mailbox's sync state."""
        ...


class MailBackend(Protocol):
    name: str

    def unroutable(self, recipients: list[str]) -> str | None:
        """Why some recipient cannot be delivered at all with this configuration, or None."""
        ...

    def deliver(self, mail: OutboundMail) -> DeliveryResult: ...

    def start(self, sink: InboundSink) -> None:
        """Begin receiving inbound mail (listeners, sync loops)."""
        ...

    def stop(self) -> None: ...

    def confirm_delivered(self, mail: OutboundMail, first_attempt: bool = True) -> list[str]:
        """After a crash between hand-over and recording it: the recipients this message can be
        shown to have reached already (by its Message-ID or bytes), so a retry skips them.
        ``first_attempt`` is False when earlier attempts may have delivered it to others."""
        ...

    def provision(self, address: str) -> None:
        """Create the mailbox for a new inbox on the mail servers (no-op where nothing is needed)."""
        ...

    def labels_changed(self, inbox_id: str, message_pk: int, added: list[str], removed: list[str]) -> None:
        """Mirror a label change to the server (flags and keywords), where there is one."""
        ...
