"""DKIM and authentication results end to end: `inbox-mcp domains dkim-keygen` prints the record
to publish, outbound mail is signed and verifies against that record, and inbound mail over the
real SMTP listener gets SPF/DKIM/DMARC verdicts in read_message. There is no DNS here, so the
records are fed through the verifier's DNS hook (INBOX_MCP_AUTH_DNS pointing at a JSON file)."""

from __future__ import annotations

import json
import re
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller

from inbox_mcp.mail.authresults import evaluate
from inbox_mcp.mail.dkim_sign import generate_key, sign, txt_value
from inbox_mcp.service import build_service
from inbox_mcp.settings import Settings
from tests.conftest import REPO, Home, free_port, wait_port


class Sink:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.got.append(envelope.original_content)
        return "250 OK"


def record_value(zone_line: str) -> str:
    return "".join(re.findall(r'"([^"]*)"', zone_line))


def test_outbound_is_signed_and_inbound_is_judged(home: Home, tmp_path: Path) -> None:
    out = home.cli("domains", "dkim-keygen", "agents.test", "--bits", "1024").stdout
    zone = next(line for line in out.splitlines() if "_domainkey" in line)
    assert zone.startswith("inbox._domainkey.agents.test.") and "v=DKIM1" in zone
    again = home.cli("domains", "dkim-keygen", "agents.test", check=False)
    assert again.returncode != 0 and again.stderr.startswith("conflict:")

    outside_key, _ = generate_key("outside.example", "s1", 1024)
    records = {
        "inbox._domainkey.agents.test": [record_value(zone)],
        "_dmarc.agents.test": ["v=DMARC1; p=reject"],
        "s1._domainkey.outside.example": [txt_value(outside_key)],
        "outside.example": ["v=spf1 ip4:127.0.0.1 -all"],
        "_dmarc.outside.example": ["v=DMARC1; p=quarantine"],
    }
    dns_file = tmp_path / "dns.json"
    dns_file.write_text(json.dumps(records))
    policy = tmp_path / "policies"
    policy.mkdir()
    text = (REPO / "policies" / "default.toml").read_text()
    text = text.replace('allow = ["*@{domain}"]', 'allow = ["*@{domain}", "*@elsewhere.example"]').replace("hold_first_contact = true", "hold_first_contact = false")
    (policy / "default.toml").write_text(text)

    sink = Sink()
    sink_port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=sink_port)
    ctl.start()
    listen = free_port()
    settings = Settings(
        home=home.path, domain="agents.test", policy_dir=policy, auth_dns=str(dns_file), smtp_listen=f"127.0.0.1:{listen}",
        smtp_host="127.0.0.1", smtp_port=sink_port, smtp_tls="none",
    )
    svc = build_service(settings, listen=True)
    try:
        alice, _ = svc.create_agent("alice")
        a = svc.provision_inbox(alice, "alice")
        sent = svc.send_message(alice, a.inbox_id, ["pat@elsewhere.example"], "Signed", text="hello pat")
        assert sent.status == "sent" and len(sink.got) == 1
        wire = sink.got[0]
        assert wire.startswith(b"DKIM-Signature:")
        verdict = evaluate(wire, client_ip=None, helo=None, mail_from=None, dns_txt=lambda n: records[n.rstrip(".")])
        assert (verdict.dkim, verdict.dmarc) == ("pass", "pass")
        tampered = wire.replace(b"hello pat", b"hello PAT")
        assert evaluate(tampered, client_ip=None, helo=None, mail_from=None, dns_txt=lambda n: records[n.rstrip(".")]).dkim == "fail"

        wait_port(listen)
        for body, want in (("genuine", ("pass", "pass", "pass")), ("forged", ("pass", "fail", "pass"))):
            m = EmailMessage()
            m["From"], m["To"], m["Subject"], m["Message-ID"] = "news@outside.example", a.address, body, make_msgid(domain="outside.example")
            m.set_content(f"{body} message")
            raw = sign(bytes(m), outside_key)
            if body == "forged":
                raw = raw.replace(b"forged message", b"FORGED MESSAGE")
            with smtplib.SMTP("127.0.0.1", listen, timeout=10) as smtp:
                smtp.sendmail("bounces@outside.example", [a.address], raw)
            got = svc.search(alice, f"subject:{body}").messages[0]
            auth = svc.read_message(alice, got.message_id).authentication
            # SPF passes for 127.0.0.1; DMARC passes on the aligned SPF even when DKIM fails.
            assert (auth.spf, auth.dkim, auth.dmarc) == want, (body, auth)
    finally:
        svc.backend.stop()
        ctl.stop()
