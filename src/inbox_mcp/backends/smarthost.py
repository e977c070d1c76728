"""Handing a message to an SMTP relay with aiosmtplib: the embedded backend's route for
recipients outside the local domain. SMTP errors are translated here, in one place."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl

import aiosmtplib

from ..settings import Settings
from .base import DeliveryResult, OutboundMail

TIMEOUT_S = 30


@functools.cache
def _local_hostname() -> str:
    # Else aiosmtplib asks socket.getfqdn() for every connection, in asyncio.to_thread: with a new
    # event loop per message (relay below), every send started and joined a thread for it.
    return socket.getfqdn()


def _tls_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not settings.tls_verify:  # test servers with self-signed certificates only
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _send(settings: Settings, mail: OutboundMail) -> DeliveryResult:
    result = DeliveryResult()
    tls = settings.smtp_tls
    try:
        errors, _reply = await aiosmtplib.send(
            mail.raw,
            sender=mail.envelope_from,
            recipients=mail.recipients,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            local_hostname=_local_hostname(),
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=tls == "implicit",
            start_tls=tls == "starttls",
            tls_context=_tls_context(settings) if tls != "none" else None,
            timeout=TIMEOUT_S,
        )
    except aiosmtplib.SMTPRecipientsRefused as e:
        for err in e.recipients:
            bucket = result.permanent if err.code >= 500 else result.temporary
            bucket[err.recipient] = f"{err.code} {err.message}"
        return result
    except aiosmtplib.SMTPAuthenticationError as e:
        # Our credentials are refused, not the message: keep it queued until an operator fixes
        # them (as Postfix's own client does, smtp_sasl_auth_soft_bounce = yes) instead of
        # failing every message sent meanwhile for good. The outbox gives up after a day.
        for r in mail.recipients:
            result.temporary[r] = (
                f"{e.code} {e.message} (login as {settings.smtp_username} at {settings.smtp_host}:{settings.smtp_port} "
                "refused: check INBOX_MCP_SMTP_USERNAME / INBOX_MCP_SMTP_PASSWORD)"
            )
        return result
    except aiosmtplib.SMTPResponseException as e:
        bucket = result.permanent if e.code >= 500 else result.temporary
        for r in mail.recipients:
            bucket[r] = f"{e.code} {e.message}"
        return result
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
        for r in mail.recipients:
            result.temporary[r] = f"relay {settings.smtp_host}:{settings.smtp_port} unreachable: {e}"
        return result
    for r in mail.recipients:
        if r in errors:
            code, msg = errors[r]
            (result.permanent if code >= 500 else result.temporary)[r] = f"{code} {msg}"
        else:
            result.delivered.append(r)
    return result


def relay(settings: Settings, mail: OutboundMail) -> DeliveryResult:
    """Blocking wrapper: service methods run in worker threads, which have no event loop."""
    return asyncio.run(_send(settings, mail))
