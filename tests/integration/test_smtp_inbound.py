"""Mail injected with smtplib into the real SMTP listener of `inbox-mcp serve`, read back through
the MCP client: every message of CPython's test_email corpus (several malformed) is stored and
readable, and a wait_for_message is woken by SMTP delivery."""

from __future__ import annotations

import email
import email.policy
import smtplib

import anyio
import pytest

from tests.conftest import Home, call, stdio_client, wait_port
from tests.corpora import corpus_files


def _has_content(raw: str) -> bool:
    """Whether any leaf part of the message carries bytes (stdlib's view, independent of ours)."""
    parsed = email.message_from_string(raw, policy=email.policy.compat32)
    for part in parsed.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            if payload.strip():
                return True
    return False


def _send(port: int, to: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("sender@example.org", [to], raw)


@pytest.mark.anyio
async def test_cpython_corpus_is_stored_raw_and_readable(home: Home) -> None:
    files = corpus_files("cpython")
    assert len(files) >= 40
    key = home.create_agent("bob")
    async with stdio_client(home, key) as client:
        inbox = await call(client, "provision_inbox", username="bob")
        wait_port(home.smtp_port)
        sent: dict[str, bytes] = {}
        for f in files:
            raw = f.read_bytes()
            await anyio.to_thread.run_sync(_send, home.smtp_port, inbox["address"], raw)
            sent[f.name] = raw
        seen = 0
        cursor = None
        ids: list[str] = []
        while True:
            page = await call(client, "list_threads", inbox_id=inbox["inbox_id"], limit=100, **({"cursor": cursor} if cursor else {}))
            for t in page["threads"]:
                thread = await call(client, "get_thread", thread_id=t["thread_id"])
                ids += [m["message_id"] for m in thread["messages"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        # Identical corpus files are one delivery each (same bytes to the same inbox are stored once).
        assert len(ids) == len(set(sent.values()))
        for mid in ids:
            msg = await call(client, "read_message", message_id=mid, format="raw", max_chars=1_000_000)
            assert msg["untrusted"] is True
            assert msg["raw"], f"{mid} has no raw source"
            full = await call(client, "read_message", message_id=mid)
            if _has_content(msg["raw"]):  # whatever the sender put in the body is readable as text or attachments
                assert full["text"].strip() or full["attachments"], f"{mid}: body lost"
            if not full["parse_ok"]:
                assert full["text"], f"{mid}: an unparseable message must show its raw source as text"
            seen += 1
        assert seen == len(ids)


@pytest.mark.anyio
async def test_wait_for_message_is_woken_by_smtp_delivery(home: Home) -> None:
    key = home.create_agent("carol")
    async with stdio_client(home, key) as client:
        inbox = await call(client, "provision_inbox", username="carol")
        wait_port(home.smtp_port)
        result: dict = {}

        async def wait() -> None:
            result.update(await call(client, "wait_for_message", inbox_id=inbox["inbox_id"], query="subject:code", timeout_s=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.5)
            noise = b"From: a@example.org\r\nTo: carol@agents.test\r\nSubject: newsletter\r\n\r\nnot this one\r\n"
            await anyio.to_thread.run_sync(_send, home.smtp_port, inbox["address"], noise)
            mail = (
                b"From: Acme <noreply@acme.example>\r\nTo: carol@agents.test\r\nSubject: Your code\r\n"
                b"Content-Type: text/html; charset=utf-8\r\n\r\n"
                b"<p>Your verification code is <b>482913</b>.</p>"
                b'<p><a href="https://acme.example/verify?token=abc123&amp;u=7">Confirm your email</a></p>'
                b'<p><a href="https://acme.example/unsubscribe">Unsubscribe</a></p>\r\n'
            )
            await anyio.to_thread.run_sync(_send, home.smtp_port, inbox["address"], mail)
        assert result["status"] == "received"
        assert result["message"]["subject"] == "Your code"
        found = await call(client, "extract_verification", message_id=result["message"]["message_id"])
        assert found["codes"][0] == "482913"
        assert found["links"][0] == "https://acme.example/verify?token=abc123&u=7"
        assert "https://acme.example/unsubscribe" not in found["links"]
