"""The embedded inbound SMTP listener: an aiosmtpd handler that asks the service whether each
recipient exists and stores accepted mail through it. Never an open relay: only the local domain's
existing inboxes are accepted.

Several server processes may share one data home; exactly one of them owns the listener, decided
by an exclusive lock file. The others log that and retry now and then, so that the listener comes
back when its owner exits.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .base import InboundSink

log = logging.getLogger(__name__)
TAKEOVER_INTERVAL_S = 2.0


class TolerantSMTP(SMTP):
    # RFC 5321 caps lines at 1000 octets, but real senders exceed it and we store malformed mail
    # raw rather than refuse it (Postfix, likewise, accepts and splits long lines). The message
    # size limit still bounds the whole.
    line_length_limit = 1_048_576


class _Controller(Controller):
    def factory(self) -> SMTP:
        return TolerantSMTP(self.handler, **self.SMTP_kwargs)


class InboundHandler:
    def __init__(self, sink: InboundSink, max_bytes: int) -> None:
        self.sink = sink
        self.max_bytes = max_bytes

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]) -> str:
        size = None
        for opt in mail_options:
            if opt.upper().startswith("SIZE="):
                try:
                    size = int(opt[5:])
                except ValueError:
                    return "501 5.5.4 SIZE parameter is not a number"
        if size is not None and size > self.max_bytes:
            return f"552 5.3.4 message size {size} exceeds the limit of {self.max_bytes} bytes"
        refusal = self.sink.check_sender(address or None, size)
        if refusal:
            return f"{refusal[0]} {refusal[1]}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        refusal = self.sink.check_recipient(address)
        if refusal:
            return f"{refusal[0]} {refusal[1]}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.max_bytes:
            return f"552 5.3.4 message of {len(raw)} bytes exceeds the limit of {self.max_bytes} bytes"
        try:
            peer = session.peer[0] if isinstance(session.peer, tuple) else None
            # DNS lookups block: keep them off the listener's event loop.
            auth = await asyncio.to_thread(self.sink.authenticate_inbound, raw, peer, session.host_name, envelope.mail_from or None)
            self.sink.receive(raw, list(envelope.rcpt_tos), envelope.mail_from or None, auth)
        except Exception:  # a storage failure must make the client retry, not lose the mail
            log.exception("storing inbound mail failed")
            return "451 4.3.0 temporary storage failure, try again later"
        return "250 2.0.0 OK: stored"


class SMTPListener:
    def __init__(self, sink: InboundSink, host: str, port: int, lock_path: Path, max_bytes: int) -> None:
        self.host, self.port = host, port
        self.lock_path = lock_path
        self.handler = InboundHandler(sink, max_bytes)
        self.max_bytes = max_bytes
        self._controller: Controller | None = None
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def owner(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._try_own():
            return
        log.warning(
            "SMTP listener on %s:%s is owned by another inbox-mcp process (%s); this process keeps "
            "serving MCP and will take the listener over if that process exits",
            self.host, self.port, self._owner_pid(),
        )
        self._thread = threading.Thread(target=self._takeover_loop, name="smtp-takeover", daemon=True)
        self._thread.start()

    def _owner_pid(self) -> str:
        try:
            return "pid " + self.lock_path.read_text().strip()
        except OSError:
            return "unknown pid"

    def _try_own(self) -> bool:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        controller = _Controller(
            self.handler, hostname=self.host, port=self.port, data_size_limit=self.max_bytes,
            decode_data=False, server_hostname=self.host, ready_timeout=10,
        )
        try:
            controller.start()
        except Exception as e:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            log.error("SMTP listener could not bind %s:%s: %s", self.host, self.port, e)
            return False
        self._lock_fd = fd
        self._controller = controller
        log.info("SMTP listener owned by this process on %s:%s", self.host, self.port)
        return True

    def _takeover_loop(self) -> None:
        while not self._stop.wait(TAKEOVER_INTERVAL_S):
            if self._try_own():
                return

    def stop(self) -> None:
        self._stop.set()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
