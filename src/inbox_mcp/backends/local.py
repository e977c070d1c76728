"""The embedded backend (the default): mail between inboxes of the local domain is delivered
straight into the store; mail for other domains goes to the configured smarthost, and with none
configured it is refused before anything is stored. Inbound mail arrives on the SMTP listener."""

from __future__ import annotations

from ..settings import Settings
from .base import DeliveryResult, InboundSink, OutboundMail
from .smarthost import relay
from .smtp_listener import SMTPListener


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings, max_inbound_bytes: int, listen: bool = True) -> None:
        self.settings = settings
        self.max_inbound_bytes = max_inbound_bytes
        self.listen = listen
        self._sink: InboundSink | None = None
        self.listener: SMTPListener | None = None

    def _is_local(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() == self.settings.domain

    def unroutable(self, recipients: list[str]) -> str | None:
        if self.settings.smtp_host:
            return None
        foreign = sorted({r.rpartition("@")[2] for r in recipients if not self._is_local(r)})
        if foreign:
            return (
                f"no smarthost configured for mail to {', '.join(foreign)}: set INBOX_MCP_SMTP_HOST "
                f"(the embedded backend delivers only to {self.settings.domain} by itself)"
            )
        return None

    def deliver(self, mail: OutboundMail) -> DeliveryResult:
        if self._sink is None:
            raise RuntimeError("backend not started")
        result = DeliveryResult()
        local = [r for r in mail.recipients if self._is_local(r)]
        remote = [r for r in mail.recipients if not self._is_local(r)]
        for rcpt in local:
            refusal = self._sink.check_recipient(rcpt)
            if refusal:
                result.permanent[rcpt] = f"{refusal[0]} {refusal[1]}"
        accepted = [r for r in local if r not in result.permanent]
        if accepted:
            self._sink.receive(mail.raw, accepted, mail.envelope_from)
            result.delivered.extend(accepted)
        if remote:
            r = relay(self.settings, OutboundMail(mail.envelope_from, remote, mail.raw, mail.message_id))
            result.delivered += r.delivered
            result.temporary.update(r.temporary)
            result.permanent.update(r.permanent)
        return result

    def start(self, sink: InboundSink) -> None:
        self._sink = sink
        if self.listen:
            host, port = self.settings.smtp_listen_addr
            self.listener = SMTPListener(sink, host, port, self.settings.home / "smtp-listener.lock", self.max_inbound_bytes)
            self.listener.start()

    def stop(self) -> None:
        if self.listener:
            self.listener.stop()

    def confirm_delivered(self, mail: OutboundMail, first_attempt: bool = True) -> list[str]:
        """Local delivery is idempotent (an inbox never stores the same bytes twice), so local
        recipients are simply retried; a smarthost gives no way to ask, so remote ones are too."""
        return []

    def provision(self, address: str) -> None:
        """The store is the mailbox: nothing to create."""

    def labels_changed(self, inbox_id: str, message_pk: int, added: list[str], removed: list[str]) -> None:
        """Labels live only in the store."""
