"""Several server processes share one data home, as they do when each MCP client spawns its own
`inbox-mcp serve`: no "database is locked", exactly one SMTP listener, and a wait in one process
woken by mail another process delivered."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import anyio
import pytest

from tests.conftest import REPO, Home, HttpServer, call, http_client, wait_port


def roomy_policy(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    text = (REPO / "policies" / "default.toml").read_text()
    text = text.replace("per_minute = 5", "per_minute = 1000").replace("per_hour = 10\n", "per_hour = 1000\n")
    text = text.replace("per_day = 10\n", "per_day = 1000\n").replace("per_minute = 30\n", "per_minute = 1000\n")
    (d / "default.toml").write_text(text)
    return d


def _mail(to: str, subject: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "outside@example.org", to, subject
    m.set_content("hello from outside")
    return bytes(m)


@pytest.mark.anyio
async def test_three_processes_share_one_home(home: Home, tmp_path: Path) -> None:
    home.env["INBOX_MCP_POLICY_DIR"] = str(roomy_policy(tmp_path))
    alice, bob = home.create_agent("alice"), home.create_agent("bob")
    with HttpServer(home) as a, HttpServer(home) as b, HttpServer(home) as c:
        time.sleep(0.5)
        logs = [Path(s.log.name).read_text() for s in (a, b, c)]
        owners = [log for log in logs if "SMTP listener owned by this process" in log]
        others = [log for log in logs if "owned by another inbox-mcp process" in log]
        assert len(owners) == 1 and len(others) == 2, logs

        async with http_client(a.url, alice) as ca, http_client(b.url, bob) as cb, http_client(c.url, alice) as cc:
            ia = await call(ca, "provision_inbox", username="alice")
            ib = await call(cb, "provision_inbox", username="bob")

            # A wait in process B is woken by a delivery that process A makes.
            waited: dict = {}

            async def wait() -> None:
                t0 = time.monotonic()
                waited["result"] = await call(cb, "wait_for_message", inbox_id=ib["inbox_id"], timeout_s=30)
                waited["elapsed"] = time.monotonic() - t0

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(1.0)
                await call(ca, "send_message", inbox_id=ia["inbox_id"], to=[ib["address"]], subject="cross-process", text="wake up")
            assert waited["result"]["status"] == "received"
            assert waited["result"]["message"]["subject"] == "cross-process"
            assert waited["elapsed"] < 10, "the wait was not woken; it ran towards its timeout"

            # Concurrent sends from two processes writing the same database: none fails, none is lost.
            n = 15

            async def burst(client: object, tag: str) -> None:
                for i in range(n):
                    await call(client, "send_message", inbox_id=ia["inbox_id"], to=[ib["address"]], subject=f"{tag}-{i}", text=f"burst {tag} {i}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(burst, ca, "via-a")
                tg.start_soon(burst, cc, "via-c")
            got = await call(cb, "search", query="to:bob@agents.test -subject:cross", inbox_id=ib["inbox_id"], limit=100)
            subjects = sorted(m["subject"] for m in got["messages"])
            assert subjects == sorted([f"via-a-{i}" for i in range(n)] + [f"via-c-{i}" for i in range(n)])

        for log in (Path(s.log.name).read_text() for s in (a, b, c)):
            assert "database is locked" not in log


def test_listener_is_taken_over_when_its_owner_exits(home: Home, tmp_path: Path) -> None:
    home.cli("agents", "create", "bob")
    servers = [HttpServer(home), HttpServer(home)]
    for s in servers:
        s.__enter__()
    try:
        wait_port(home.smtp_port)
        owner = next(s for s in servers if "owned by this process" in Path(s.log.name).read_text())
        other = next(s for s in servers if s is not owner)
        owner.__exit__()
        servers.remove(owner)
        deadline = time.monotonic() + 15
        while "owned by this process" not in Path(other.log.name).read_text():
            assert time.monotonic() < deadline, "no process took the SMTP listener over"
            time.sleep(0.2)
        wait_port(home.smtp_port)
        with smtplib.SMTP("127.0.0.1", home.smtp_port, timeout=10) as smtp:
            code, _ = smtp.noop()
            assert code == 250
    finally:
        for s in servers:
            s.__exit__()


