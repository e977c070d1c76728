"""One conformance suite, run against every backend: the embedded one (SQLite + our SMTP
listener + a smarthost) and smtp_imap on real Postfix and Dovecot. The scenarios read only the
service's public results, so passing both means the backends are interchangeable.

Mail "from the internet" is injected with smtplib into whatever accepts mail for the domain
(our listener, or Postfix's port 25 service); mail to other domains lands in an aiosmtpd sink
standing in for the rest of the world.
"""

from __future__ import annotations

import base64
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import anyio
import imapclient
import pytest
from aiosmtpd.controller import Controller

from inbox_mcp.contract import AttachmentIn
from inbox_mcp.service import AgentRef, Service, build_service
from inbox_mcp.settings import Settings
from tests.conftest import REPO, free_port, wait_port
from tests.mailservers import MailServers

DOMAIN = "mail.test"
WAIT_S = 20


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.got.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@dataclass
class World:
    kind: str
    svc: Service
    inject_port: int
    sink: Sink
    servers: MailServers | None
    alice: AgentRef
    bob: AgentRef

    def inject(self, rcpt: str, msg: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.inject_port, timeout=30) as smtp:
            smtp.send_message(msg, from_addr="someone@outside.example", to_addrs=[rcpt])

    def provisioned(self) -> None:
        if self.servers is not None:  # let Postfix's idle smtpd processes pick up the new map
            self.servers.reload_postfix()

    def server_flags(self, address: str, subject: str) -> set[str] | None:
        """Flags of a message as the IMAP server has them (None on the embedded backend)."""
        if self.servers is None:
            return None
        with imapclient.IMAPClient("127.0.0.1", port=self.servers.imap_port, ssl=False) as c:
            c.login(f"{address}*{self.servers.master_user}", self.servers.master_password)
            c.select_folder("INBOX")
            uids = c.search(["SUBJECT", subject])
            assert uids, f"{subject!r} not on the server"
            return {f.decode() for f in c.get_flags(uids)[uids[0]]}


def policy_dir(tmp: Path) -> Path:
    d = tmp / "policies"
    d.mkdir()
    text = (REPO / "policies" / "default.toml").read_text()
    text = text.replace('allow = ["*@{domain}"]', 'allow = ["*@{domain}", "*@elsewhere.example"]')
    text = text.replace("hold_first_contact = true", "hold_first_contact = false")
    text = text.replace("per_minute = 5\n", "per_minute = 100\n").replace("per_hour = 10\n", "per_hour = 100\n")
    text = text.replace("per_day = 10\n", "per_day = 100\n").replace("new_per_hour = 3", "new_per_hour = 100")
    (d / "default.toml").write_text(text)
    return d


@pytest.fixture(params=["local", "smtp_imap"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    sink = Sink()
    sink_port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=sink_port)
    ctl.start()
    servers = None
    common = dict(home=tmp_path / "home", domain=DOMAIN, policy_dir=policy_dir(tmp_path), auth_dns="off")
    try:
        if request.param == "local":
            listen = free_port()
            settings = Settings(**common, smtp_listen=f"127.0.0.1:{listen}", smtp_host="127.0.0.1", smtp_port=sink_port, smtp_tls="none")
            inject = listen
        else:
            servers = MailServers(tmp_path / "servers", DOMAIN, relay_to=("127.0.0.1", sink_port)).start()
            servers.add_user(f"submit@{DOMAIN}", "submit-pw")
            settings = Settings(
                **common, backend="smtp_imap", smtp_listen=f"127.0.0.1:{free_port()}",
                smtp_host="127.0.0.1", smtp_port=servers.submission_port, smtp_tls="none",
                smtp_username=f"submit@{DOMAIN}", smtp_password="submit-pw",
                imap_host="127.0.0.1", imap_port=servers.imap_port, imap_tls="none",
                imap_username=servers.master_user, imap_password=servers.master_password, imap_poll_s=1,
                dovecot_users_file=servers.users_file, postfix_recipients_file=servers.postfix_recipients_file,
                provision_command=f"postfix -c {servers.postfix_dir} reload",
            )
            inject = servers.smtp_port
        svc = build_service(settings, listen=True)
        if request.param == "local":
            wait_port(inject)
        alice, _ = svc.create_agent("alice")
        bob, _ = svc.create_agent("bob")
        yield World(request.param, svc, inject, sink, servers, alice, bob)
        svc.backend.stop()
    finally:
        ctl.stop()
        if servers is not None:
            servers.stop()


def wait_for(svc: Service, agent: AgentRef, inbox_id: str, query: str | None = None, since: str | None = None):  # type: ignore[no-untyped-def]
    result = anyio.run(lambda: svc.wait_for_message(agent, inbox_id, query, since or None, WAIT_S))
    assert result.status == "received", f"nothing matching {query!r} arrived within {WAIT_S} s"
    return result.message



# --- scenarios ----------------------------------------------------------------------------------


def test_send_receive_attachment_and_sent_copy(world: World) -> None:
    svc = world.svc
    a = svc.provision_inbox(world.alice, "alice", "Alice")
    b = svc.provision_inbox(world.bob, "bob")
    world.provisioned()
    blob = bytes(range(256)) * 8
    sent = svc.send_message(
        world.alice, a.inbox_id, [b.address], "Grüße – conformance", text="hello bob",
        attachments=[AttachmentIn(filename="data.bin", content_type="application/octet-stream", content_base64=base64.b64encode(blob).decode())],
    )
    assert sent.status == "sent" and sent.delivered == [b.address]
    got = wait_for(svc, world.bob, b.inbox_id, "subject:conformance", since="1970-01-01T00:00:00Z")
    assert got.subject == "Grüße – conformance" and got.from_ == a.address and got.text.strip() == "hello bob"
    assert [x.filename for x in got.attachments] == ["data.bin"]
    content, data = svc.get_attachment(world.bob, got.message_id, got.attachments[0].attachment_id)
    assert data == blob
    assert sorted(got.labels) == ["inbox", "unread"]
    mine = svc.list_threads(world.alice, a.inbox_id, labels=["sent"]).threads
    assert [t.subject for t in mine] == ["Grüße – conformance"]


def test_reply_threads_on_both_sides(world: World) -> None:
    svc = world.svc
    a = svc.provision_inbox(world.alice, "alice")
    b = svc.provision_inbox(world.bob, "bob")
    world.provisioned()
    first = svc.send_message(world.alice, a.inbox_id, [b.address], "Lunch?", text="Friday?")
    got = wait_for(svc, world.bob, b.inbox_id, "subject:lunch", since="1970-01-01T00:00:00Z")
    svc.reply(world.bob, got.message_id, text="Yes!\n\nOn Friday, alice wrote:\n> Friday?")
    answer = wait_for(svc, world.alice, a.inbox_id, "from:bob", since="1970-01-01T00:00:00Z")
    assert answer.subject == "Re: Lunch?"
    assert answer.thread_id == first.thread_id, "the reply must join the thread of the message it answers"
    assert answer.reply_text.strip() == "Yes!"
    thread = svc.get_thread(world.alice, first.thread_id)  # type: ignore[arg-type]
    assert [m.subject for m in thread.messages] == ["Lunch?", "Re: Lunch?"]


def test_inbound_from_outside_wakes_a_waiter_and_is_searchable(world: World) -> None:
    svc = world.svc
    b = svc.provision_inbox(world.bob, "bob")
    world.provisioned()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Shop <noreply@outside.example>", b.address, "Your code"
    msg.set_content("Your verification code is 482913.")
    result: dict = {}

    async def scenario() -> None:
        async def waiter() -> None:
            result["m"] = await svc.wait_for_message(world.bob, b.inbox_id, "subject:code", None, WAIT_S)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(world.inject, b.address, msg)

    anyio.run(scenario)
    assert result["m"].status == "received" and result["m"].message.subject == "Your code"
    assert svc.extract_verification(world.bob, result["m"].message.message_id).codes == ["482913"]
    assert [m.subject for m in svc.search(world.bob, "from:noreply@outside.example 482913").messages] == ["Your code"]


def test_labels_and_read_state(world: World) -> None:
    svc = world.svc
    b = svc.provision_inbox(world.bob, "bob")
    world.provisioned()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "x@outside.example", b.address, "Label me"
    msg.set_content("body")
    world.inject(b.address, msg)
    got = wait_for(svc, world.bob, b.inbox_id, since="1970-01-01T00:00:00Z")
    labels = svc.update_labels(world.bob, message_id=got.message_id, add=["Projects"], remove=["unread"]).labels
    assert labels == ["Projects", "inbox"]
    assert [m.subject for m in svc.search(world.bob, "is:read label:Projects").messages] == ["Label me"]
    flags = world.server_flags(b.address, "Label me")
    if flags is not None:  # the server mirrors what the agent did
        assert "\\Seen" in flags and "Projects" in flags


def test_mail_to_another_domain_goes_out_and_unknown_local_users_fail(world: World) -> None:
    svc = world.svc
    a = svc.provision_inbox(world.alice, "alice")
    world.provisioned()
    out = svc.send_message(world.alice, a.inbox_id, ["pat@elsewhere.example"], "Hello Pat", text="hi")
    assert out.status == "sent" and out.delivered == ["pat@elsewhere.example"]
    deadline = time.monotonic() + WAIT_S
    while not world.sink.got and time.monotonic() < deadline:
        time.sleep(0.1)
    assert world.sink.got and world.sink.got[0][0] == ["pat@elsewhere.example"]
    assert b"Subject: Hello Pat" in world.sink.got[0][1]
    bad = svc.send_message(world.alice, a.inbox_id, [f"nobody@{DOMAIN}"], "To nobody", text="?")
    assert bad.delivered == [] and list(bad.failed) == [f"nobody@{DOMAIN}"]
    assert bad.failed[f"nobody@{DOMAIN}"].startswith("550")
    assert svc.read_message(world.alice, bad.message_id).delivery_status == "failed"  # type: ignore[arg-type]
