"""The policy rules the path table does not cover, against a real SQLite store, the real CLI for
human actions, and a real SMTP smarthost (aiosmtpd on 127.0.0.1) for external recipients."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from inbox_mcp.errors import AgentPaused, InboxError, NotFound, PolicyDenied, QuotaExceeded, RateLimited
from inbox_mcp.service import Service, build_service
from inbox_mcp.settings import Settings
from tests.conftest import REPO, Home, free_port


class Sink:
    """A real SMTP server standing in for the internet's mail servers."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def smarthost():  # type: ignore[no-untyped-def]
    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    sink.port = port  # type: ignore[attr-defined]
    yield sink
    ctl.stop()


def make_policy(tmp_path: Path, **replace: str) -> Path:
    d = tmp_path / "policies"
    (d / "agents").mkdir(parents=True, exist_ok=True)
    (d / "tenants").mkdir(exist_ok=True)
    text = (REPO / "policies" / "default.toml").read_text()
    for old, new in replace.items():
        assert old.replace("__", ".") in text or old in text, old
        text = text.replace(old, new)
    (d / "default.toml").write_text(text)
    return d


def service(home: Home, policy_dir: Path, smarthost_port: int | None = None) -> Service:
    env = dict(home.env, INBOX_MCP_POLICY_DIR=str(policy_dir))
    if smarthost_port:
        env.update(INBOX_MCP_SMTP_HOST="127.0.0.1", INBOX_MCP_SMTP_PORT=str(smarthost_port), INBOX_MCP_SMTP_TLS="none")
    settings = Settings(**{k[len("INBOX_MCP_"):].lower(): v for k, v in env.items() if k.startswith("INBOX_MCP_")})
    return build_service(settings, listen=False)


def cli(home: Home, policy_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"INBOX_MCP_POLICY_DIR": str(policy_dir)}
    smarthost_port = getattr(home, "smarthost_port", None)
    if smarthost_port:
        env.update(INBOX_MCP_SMTP_HOST="127.0.0.1", INBOX_MCP_SMTP_PORT=str(smarthost_port), INBOX_MCP_SMTP_TLS="none")
    return home.cli(*args, check=check, env=env)


@pytest.fixture
def world(home: Home, tmp_path: Path):  # type: ignore[no-untyped-def]
    """alice (the agent under test) and bob (a local recipient), each with an inbox."""
    policy_dir = make_policy(tmp_path)
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    bob, _ = svc.create_agent("bob")
    a = svc.provision_inbox(alice, "alice")
    b = svc.provision_inbox(bob, "bob")
    return svc, alice, bob, a, b, policy_dir


def sent_count(home: Home, address: str) -> int:
    db = sqlite3.connect(home.path / "inbox.db")
    try:
        return db.execute(
            "SELECT count(*) FROM message m JOIN inbox i ON i.id = m.inbox_id WHERE i.address = ? AND m.direction = 'in'", (address,)
        ).fetchone()[0]
    finally:
        db.close()


# --- caps hold under concurrency ---------------------------------------------------------------


def test_fifty_concurrent_sends_against_a_cap_of_ten_send_exactly_ten(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"per_minute = 5\n": "per_minute = 100\n", "per_hour = 10\n": "per_hour = 100\n"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    bob, _ = svc.create_agent("bob")
    a, b = svc.provision_inbox(alice, "alice"), svc.provision_inbox(bob, "bob")

    def one(i: int) -> str:
        try:
            svc.send_message(alice, a.inbox_id, [b.address], f"n{i}", text=f"message {i}")
            return "sent"
        except InboxError as e:
            return e.code

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    assert outcomes.count("sent") == 10, outcomes
    assert outcomes.count("quota_exceeded") == 40
    assert sent_count(home, "bob@agents.test") == 10


def test_concurrent_sends_from_separate_processes_respect_the_cap(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"per_minute = 5\n": "per_minute = 100\n", "per_hour = 10\n": "per_hour = 100\n"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    bob, _ = svc.create_agent("bob")
    a, b = svc.provision_inbox(alice, "alice"), svc.provision_inbox(bob, "bob")
    script = f"""
import sys, json
from concurrent.futures import ThreadPoolExecutor
from inbox_mcp.settings import Settings
from inbox_mcp.service import build_service
from inbox_mcp.errors import InboxError
svc = build_service(Settings(), listen=False)
agent = svc.agent_by_name("alice")
def one(i):
    try:
        svc.send_message(agent, {a.inbox_id!r}, [{b.address!r}], "p%s-%s" % (sys.argv[1], i), text="x %s %s" % (sys.argv[1], i))
        return "sent"
    except InboxError as e:
        return e.code
with ThreadPoolExecutor(10) as pool:
    print(json.dumps(list(pool.map(one, range(10)))))
"""
    env = dict(home.env, INBOX_MCP_POLICY_DIR=str(policy_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=env, stdout=subprocess.PIPE, text=True) for i in range(5)]
    outcomes = [o for p in procs for o in json.loads(p.communicate(timeout=120)[0])]
    assert len(outcomes) == 50
    assert outcomes.count("sent") == 10, outcomes
    assert sent_count(home, "bob@agents.test") == 10


# --- rate limits, pauses, loops, ramp, anomalies --------------------------------------------------


def test_rate_limit_says_when_to_retry(world) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, _ = world
    for i in range(5):
        svc.send_message(alice, a.inbox_id, [b.address], f"r{i}", text=f"body {i}")
    with pytest.raises(RateLimited) as e:
        svc.send_message(alice, a.inbox_id, [b.address], "r5", text="body 5")
    assert "caps.unverified.per_minute" in str(e.value) and "retry in" in str(e.value)
    assert e.value.retry_after_s is not None and 0 < e.value.retry_after_s <= 60


def test_paused_agent_cannot_send_but_can_read(world, home: Home) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, policy_dir = world
    cli(home, policy_dir, "agents", "pause", "alice")
    with pytest.raises(AgentPaused):
        svc.send_message(alice, a.inbox_id, [b.address], "x", text="y")
    assert svc.list_threads(alice, a.inbox_id).threads == []  # reads still work
    cli(home, policy_dir, "agents", "resume", "alice")
    assert svc.send_message(alice, a.inbox_id, [b.address], "x", text="y").status == "sent"


def test_same_body_to_same_recipient_twice_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, _ = world
    svc.send_message(alice, a.inbox_id, [b.address], "once", text="identical body")
    with pytest.raises(PolicyDenied, match="loops.duplicate_window_minutes"):
        svc.send_message(alice, a.inbox_id, [b.address], "twice", text="identical body")


def test_reply_to_auto_submitted_mail_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, _, _ = world
    for header in ("Auto-Submitted: auto-replied", "Precedence: bulk"):
        raw = f"From: robot@agents.test\r\nTo: alice@agents.test\r\nSubject: Out of office {header}\r\n{header}\r\n\r\nI am away.\r\n".encode()
        svc.receive(raw, ["alice@agents.test"], "robot@agents.test")
        msg = svc.search(alice, f'subject:"{header.split(":")[1].strip()}"').messages[0]
        with pytest.raises(PolicyDenied, match="loops.refuse_reply_to_auto_submitted"):
            svc.reply(alice, msg.message_id, text="thanks!")


def test_new_recipient_ramp_limits_an_unverified_agent(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"per_minute = 5\n": "per_minute = 100\n", "per_hour = 10\n": "per_hour = 100\n", "per_day = 10\n": "per_day = 100\n"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    a = svc.provision_inbox(alice, "alice")
    others = []
    for i in range(5):
        agent, _ = svc.create_agent(f"r{i}")
        others.append(svc.provision_inbox(agent, f"r{i}").address)
    for addr in others[:3]:
        svc.send_message(alice, a.inbox_id, [addr], "hi", text=f"hello {addr}")
    with pytest.raises(RateLimited, match="recipients.new_per_hour"):
        svc.send_message(alice, a.inbox_id, [others[3]], "hi", text="hello 4")
    # an address already contacted is not new
    assert svc.send_message(alice, a.inbox_id, [others[0]], "again", text="second hello").status == "sent"
    cli(home, policy_dir, "agents", "verify", "alice")
    assert svc.send_message(alice, a.inbox_id, [others[3]], "hi", text="hello 4").status == "sent"


def test_burst_of_sends_pauses_the_agent(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"sends_per_10_minutes = 50": "sends_per_10_minutes = 3"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    bob, _ = svc.create_agent("bob")
    a, b = svc.provision_inbox(alice, "alice"), svc.provision_inbox(bob, "bob")
    for i in range(3):
        svc.send_message(alice, a.inbox_id, [b.address], f"b{i}", text=f"burst {i}")
    with pytest.raises(AgentPaused, match="anomaly.sends_per_10_minutes"):
        svc.send_message(alice, a.inbox_id, [b.address], "b3", text="burst 3")
    listed = json.loads(cli(home, policy_dir, "agents", "list", "--json").stdout)
    assert next(x for x in listed if x["name"] == "alice")["paused"] is True
    with pytest.raises(AgentPaused):  # stays paused until a human resumes it
        svc.send_message(alice, a.inbox_id, [b.address], "b4", text="burst 4")


def test_bounces_pause_the_agent(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"min_sends_for_bounce_rate = 20": "min_sends_for_bounce_rate = 4",
                                          "per_minute = 5\n": "per_minute = 100\n", "per_hour = 10\n": "per_hour = 100\n"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    bob, _ = svc.create_agent("bob")
    a, b = svc.provision_inbox(alice, "alice"), svc.provision_inbox(bob, "bob")
    sent = [svc.send_message(alice, a.inbox_id, [b.address], f"m{i}", text=f"hello {i}") for i in range(4)]
    first = svc.read_message(alice, sent[0].message_id, fmt="raw", max_chars=100_000).raw
    original_id = next(line.split(":", 1)[1].strip() for line in first.splitlines() if line.lower().startswith("message-id:"))
    dsn = (
        "From: MAILER-DAEMON@agents.test\r\nTo: alice@agents.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.agents.test\r\n\r\n"
        "Final-Recipient: rfc822; bob@agents.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original_id}\r\nSubject: m0\r\n\r\n--B--\r\n"
    ).encode()
    svc.receive(dsn, ["alice@agents.test"], "")
    assert svc.read_message(alice, sent[0].message_id).delivery_status == "bounced"
    with pytest.raises(AgentPaused, match="bounce"):
        svc.send_message(alice, a.inbox_id, [b.address], "after", text="after the bounce")


# --- holds and approvals ------------------------------------------------------------------------


def external_world(home: Home, tmp_path: Path, port: int):  # type: ignore[no-untyped-def]
    policy_dir = make_policy(tmp_path, **{'allow = ["*@{domain}"]': 'allow = ["*@{domain}", "*@partner.example"]'})
    svc = service(home, policy_dir, smarthost_port=port)
    home.smarthost_port = port  # type: ignore[attr-defined]
    alice, _ = svc.create_agent("alice")
    a = svc.provision_inbox(alice, "alice")
    return svc, alice, a, policy_dir


def test_first_contact_is_held_then_approved_once(home: Home, tmp_path: Path, smarthost: Sink) -> None:
    svc, alice, a, policy_dir = external_world(home, tmp_path, smarthost.port)  # type: ignore[attr-defined]
    held = svc.send_message(alice, a.inbox_id, ["pat@partner.example"], "hello", text="first contact")
    assert held.status == "pending_approval" and held.approval_id
    assert "approval.hold_first_contact" in (held.reason or "")
    assert smarthost.messages == []
    assert svc.get_approval(alice, held.approval_id).status == "pending"
    listed = cli(home, policy_dir, "approvals", "list").stdout
    assert held.approval_id in listed
    out = cli(home, policy_dir, "approvals", "approve", held.approval_id)
    assert "approved" in out.stdout
    assert len(smarthost.messages) == 1 and smarthost.messages[0][1] == ["pat@partner.example"]
    assert svc.get_approval(alice, held.approval_id).status == "approved"
    again = cli(home, policy_dir, "approvals", "approve", held.approval_id, check=False)
    assert again.returncode != 0 and again.stderr.startswith("conflict:")
    assert len(smarthost.messages) == 1, "an approved message is sent exactly once"
    # once contacted, the address is no longer first contact
    assert svc.send_message(alice, a.inbox_id, ["pat@partner.example"], "again", text="second").status == "sent"
    assert len(smarthost.messages) == 2


def test_rejected_and_expired_holds_never_go_out(home: Home, tmp_path: Path, smarthost: Sink) -> None:
    svc, alice, a, policy_dir = external_world(home, tmp_path, smarthost.port)  # type: ignore[attr-defined]
    one = svc.send_message(alice, a.inbox_id, ["x@partner.example"], "one", text="one")
    no_reason = cli(home, policy_dir, "approvals", "reject", one.approval_id, "--reason", " ", check=False)  # type: ignore[arg-type]
    assert no_reason.returncode != 0 and no_reason.stderr.startswith("invalid_argument:")
    cli(home, policy_dir, "approvals", "reject", one.approval_id, "--reason", "not a customer")  # type: ignore[arg-type]
    assert svc.get_approval(alice, one.approval_id).status == "rejected"  # type: ignore[arg-type]
    late = cli(home, policy_dir, "approvals", "approve", one.approval_id, check=False)  # type: ignore[arg-type]
    assert late.returncode != 0 and late.stderr.startswith("conflict:")

    (policy_dir / "agents" / "alice.toml").write_text("[approval]\nexpire_after_hours = 0.0001\n")
    two = svc.send_message(alice, a.inbox_id, ["y@partner.example"], "two", text="two")
    import time

    time.sleep(0.5)
    assert svc.get_approval(alice, two.approval_id).status == "expired"  # type: ignore[arg-type]
    late = cli(home, policy_dir, "approvals", "approve", two.approval_id, check=False)  # type: ignore[arg-type]
    assert late.returncode != 0 and late.stderr.startswith("conflict:")
    assert smarthost.messages == []


def test_approvals_are_invisible_to_other_agents(home: Home, tmp_path: Path, smarthost: Sink) -> None:
    svc, alice, a, _ = external_world(home, tmp_path, smarthost.port)  # type: ignore[attr-defined]
    held = svc.send_message(alice, a.inbox_id, ["z@partner.example"], "z", text="z")
    mallory, _ = svc.create_agent("mallory", tenant="other")
    with pytest.raises(NotFound):
        svc.get_approval(mallory, held.approval_id)  # type: ignore[arg-type]


def test_check_send_consumes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, policy_dir = world
    (policy_dir / "agents" / "alice.toml").write_text("[caps.unverified]\nper_minute = 10\nper_hour = 10\nper_day = 1\n")
    for _ in range(20):
        assert svc.check_send(alice, a.inbox_id, [b.address], "s", text="t").decision == "allow"
    svc.send_message(alice, a.inbox_id, [b.address], "s", text="t")
    verdict = svc.check_send(alice, a.inbox_id, [b.address], "s2", text="t2")
    assert (verdict.decision, verdict.rule, verdict.code) == ("deny", "caps.unverified.per_day", "quota_exceeded")
    with pytest.raises(QuotaExceeded):
        svc.send_message(alice, a.inbox_id, [b.address], "s2", text="t2")


# --- policy files -------------------------------------------------------------------------------


def test_an_invalid_override_denies_only_its_agent(world, home: Home) -> None:  # type: ignore[no-untyped-def]
    svc, alice, bob, a, b, policy_dir = world
    (policy_dir / "agents" / "alice.toml").write_text("[recipients]\nallow = ['*@{domain}']\nnew_per_hour = 'lots'\n")
    with pytest.raises(PolicyDenied) as e:
        svc.send_message(alice, a.inbox_id, [b.address], "x", text="y")
    assert "recipients.new_per_hour" in str(e.value) and "alice.toml" in str(e.value)
    assert svc.send_message(bob, b.inbox_id, [a.address], "fine", text="bob is unaffected").status == "sent"
    check = cli(home, policy_dir, "policy", "check", str(policy_dir), check=False)
    assert check.returncode != 0
    assert "alice.toml" in check.stderr and "recipients.new_per_hour" in check.stderr
    assert "bob (tenant default): may send to *@agents.test" in check.stdout


def test_unknown_keys_and_bad_patterns_are_named(tmp_path: Path, home: Home) -> None:
    policy_dir = make_policy(tmp_path)
    cases = {
        "[caps]\nmax_recipents = 3\n": "caps.max_recipents",
        "[content]\nblock_patterns = ['(unclosed']\n": "content.block_patterns",
        "[content]\ndetectors = ['psychic']\n": "content.detectors",
        "[recipients\n": "not valid TOML",
    }
    for body, named in cases.items():
        (policy_dir / "agents" / "alice.toml").write_text(body)
        check = cli(home, policy_dir, "policy", "check", str(policy_dir), check=False)
        assert check.returncode != 0 and named in check.stderr and "alice.toml" in check.stderr, (body, check.stderr)


def test_inbound_sender_block_rejects_at_smtp_time(home: Home, tmp_path: Path) -> None:
    import smtplib

    policy_dir = make_policy(tmp_path, **{"block_senders = []": 'block_senders = ["*@spam.example"]'})
    settings = Settings(home=home.path, domain="agents.test", policy_dir=policy_dir, smtp_listen=f"127.0.0.1:{free_port()}")
    svc = build_service(settings, listen=True)
    try:
        bob, _ = svc.create_agent("bob")
        svc.provision_inbox(bob, "bob")
        host, port = settings.smtp_listen_addr
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "x@spam.example", "bob@agents.test", "buy"
        m.set_content("now")
        with smtplib.SMTP(host, port, timeout=10) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as e:
            smtp.send_message(m)
        assert e.value.smtp_code == 550 and b"block_senders" in e.value.smtp_error
    finally:
        svc.backend.stop()


# --- the audit log ------------------------------------------------------------------------------


def test_audit_chain_names_the_tampered_record(world, home: Home) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, policy_dir = world
    svc.send_message(alice, a.inbox_id, [b.address], "a1", text="one")
    with pytest.raises(PolicyDenied):
        svc.send_message(alice, a.inbox_id, ["x@elsewhere.example"], "a2", text="two")
    cli(home, policy_dir, "agents", "verify", "alice")
    ok = cli(home, policy_dir, "audit", "verify")
    assert "intact" in ok.stdout
    exported = [json.loads(line) for line in cli(home, policy_dir, "audit", "export").stdout.splitlines()]
    actions = [(r["action"], r["decision"]) for r in exported]
    assert ("send.decision", "allow") in actions and ("send.decision", "deny") in actions and ("agent.verify", "verify") in actions
    db = sqlite3.connect(home.path / "inbox.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET detail = 'nothing to see' WHERE seq = 2")
    # Someone with raw access drops the guard and edits history:
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET decision = 'allow' WHERE seq = 2")
    db.commit()
    db.close()
    broken = cli(home, policy_dir, "audit", "verify", check=False)
    assert broken.returncode != 0 and "audit record 2 is broken" in broken.stderr


def test_audit_appends_are_serialised_across_threads(world) -> None:  # type: ignore[no-untyped-def]
    svc, alice, _, a, b, policy_dir = world
    from inbox_mcp.policy import audit

    (policy_dir / "agents" / "alice.toml").write_text("[caps.unverified]\nper_minute = 100\nper_hour = 100\nper_day = 100\n[loops]\nduplicate_window_minutes = 0\n")
    barrier = threading.Barrier(8)

    def one(i: int) -> None:
        barrier.wait()
        try:
            svc.send_message(alice, a.inbox_id, [b.address], f"t{i}", text="x")
        except InboxError:
            pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    with svc.db.read() as s:
        n, broken = audit.verify(s)
    assert broken is None and n >= 8




def test_many_new_recipients_pause_even_a_verified_agent(home: Home, tmp_path: Path) -> None:
    policy_dir = make_policy(tmp_path, **{"new_recipients_per_hour = 20": "new_recipients_per_hour = 2"})
    svc = service(home, policy_dir)
    alice, _ = svc.create_agent("alice")
    a = svc.provision_inbox(alice, "alice")
    cli(home, policy_dir, "agents", "verify", "alice")  # the ramp no longer applies; the anomaly rule does
    targets = []
    for i in range(3):
        agent, _ = svc.create_agent(f"n{i}")
        targets.append(svc.provision_inbox(agent, f"n{i}").address)
    svc.send_message(alice, a.inbox_id, targets[:2], "hello both", text="hi")
    with pytest.raises(AgentPaused, match="anomaly.new_recipients_per_hour"):
        svc.send_message(alice, a.inbox_id, [targets[2]], "hello three", text="hi 3")
    exported = [json.loads(x) for x in cli(home, policy_dir, "audit", "export").stdout.splitlines()]
    assert any(r["action"] == "agent.pause" and r["rule"] == "anomaly.new_recipients_per_hour" and r["actor"] == "system" for r in exported)
