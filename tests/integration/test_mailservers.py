"""The real-Postfix-and-Dovecot harness (tests/mailservers.py): delivery, submission with AUTH,
refusals, master-user login, IDLE push, APPEND, relaying to a smarthost sink, and a clean stop
(also when the test process dies without stopping it)."""

from __future__ import annotations

import imaplib
import os
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.mailservers import (  # noqa: F401  (fixtures are registered by importing them)
    MailServers,
    _listening,
    mailservers,
    mailservers_module,
    missing_requirements,
)


REPO = Path(__file__).resolve().parents[2]
ALICE, BOB = "alice@mail.test", "bob@mail.test"
PW = {ALICE: "alice-pw", BOB: "bob-pw"}


@pytest.fixture(scope="module")
def ms(mailservers_module: MailServers) -> MailServers:  # noqa: F811
    mailservers_module.add_user(ALICE, PW[ALICE], wait=False)  # the next add_user waits
    mailservers_module.add_user(BOB, PW[BOB])
    return mailservers_module


def _message(to: str, sender: str = "someone@outside.example") -> tuple[str, bytes]:
    subject = f"test {uuid.uuid4().hex[:12]}"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("hello from the harness test\n")
    return subject, msg.as_bytes()


def _send(ms: MailServers, rcpt: str, raw: bytes, sender: str = "someone@outside.example",
          login: str | None = None) -> None:
    """Send one message through the MX port (or the submission port with ``login``); a refusal
    fails the test with the servers' logs attached."""
    port = ms.submission_port if login else ms.smtp_port
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            if login:
                s.login(login, PW[login])
            s.sendmail(sender, [rcpt], raw)
    except smtplib.SMTPException as e:
        raise AssertionError(f"sending to {rcpt} failed: {e!r}\n{ms.log_text()[-4000:]}") from e


def _imap(ms: MailServers, user: str, password: str) -> IMAPClient:
    c = IMAPClient("127.0.0.1", ms.imap_port, ssl=False, timeout=10)  # IMAPClient defaults to ssl=True
    c.login(user, password)
    return c


def _wait_subject(ms: MailServers, user: str, subject: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        c = _imap(ms, user, PW[user])
    except imaplib.IMAP4.error as e:
        raise AssertionError(f"login as {user} failed: {e!r}\n{ms.log_text()[-4000:]}") from e
    with c:
        while True:
            c.select_folder("INBOX", readonly=True)
            uids = c.search(["HEADER", "Subject", subject])
            if uids:
                return c.fetch(uids, ["RFC822"])[uids[0]][b"RFC822"]
            if time.monotonic() > deadline:
                raise AssertionError(f"{subject!r} not in {user}'s INBOX after {timeout} s\n{ms.log_text()[-4000:]}")
            time.sleep(0.05)


def test_mx_delivers_to_local_user_read_over_imap(ms: MailServers) -> None:
    subject, raw = _message(BOB)
    t0 = time.monotonic()
    _send(ms, BOB, raw)
    body = _wait_subject(ms, BOB, subject)
    assert b"hello from the harness test" in body
    assert time.monotonic() - t0 < 5
    assert (ms.mailbox_path(BOB) / "cur").is_dir() or (ms.mailbox_path(BOB) / "new").is_dir()


def test_master_user_opens_any_mailbox(ms: MailServers) -> None:
    subject, raw = _message(BOB)
    _send(ms, BOB, raw)
    _wait_subject(ms, BOB, subject)
    with _imap(ms, f"{BOB}*{ms.master_user}", ms.master_password) as c:
        c.select_folder("INBOX", readonly=True)
        assert c.search(["HEADER", "Subject", subject])
    with pytest.raises(imaplib.IMAP4.error):
        _imap(ms, f"{BOB}*{ms.master_user}", "wrong")
    with pytest.raises(imaplib.IMAP4.error):  # the master password opens only existing mailboxes
        _imap(ms, f"nobody@mail.test*{ms.master_user}", ms.master_password)
    for user, password in [("nobody@mail.test", "x"), (BOB, PW[ALICE]), (BOB, "")]:
        with pytest.raises(imaplib.IMAP4.error):
            _imap(ms, user, password)


def test_submission_with_auth_delivers_locally(ms: MailServers) -> None:
    subject, raw = _message(BOB, sender=ALICE)
    with smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
        s.ehlo()
        assert "PLAIN" in s.esmtp_features.get("auth", "") and "LOGIN" in s.esmtp_features.get("auth", "")
    _send(ms, BOB, raw, sender=ALICE, login=ALICE)
    _wait_subject(ms, BOB, subject)


def test_submission_refuses_bad_password(ms: MailServers) -> None:
    with (
        smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s,
        pytest.raises(smtplib.SMTPAuthenticationError) as e,
    ):
        s.login(ALICE, "nope")
    assert e.value.smtp_code == 535


def test_submission_without_auth_is_refused(ms: MailServers) -> None:
    for rcpt in ("x@elsewhere.example", BOB):
        with smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
            s.ehlo()
            s.mail(ALICE)
            code, text = s.rcpt(rcpt)
        assert code == 554, (rcpt, code, text)


def test_authenticated_submission_without_relay_refuses_other_domains(ms: MailServers) -> None:
    with smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
        s.login(ALICE, PW[ALICE])
        s.mail(ALICE)
        code, text = s.rcpt("x@elsewhere.example")
    assert code == 554 and b"Relay access denied" in text


def test_unknown_user_gets_550(ms: MailServers) -> None:
    with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as s:
        s.mail("someone@outside.example")
        code, text = s.rcpt("nobody@mail.test")
    assert code == 550 and text.startswith(b"5.1.1"), (code, text)


def test_mx_relays_nothing(ms: MailServers) -> None:
    with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as s:
        s.mail("someone@outside.example")
        code, text = s.rcpt("x@elsewhere.example")
    assert code == 554 and b"Relay access denied" in text


def test_mx_offers_no_auth(ms: MailServers) -> None:
    with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("auth")


def test_idle_gets_exists_push_within_2s(ms: MailServers) -> None:
    with _imap(ms, BOB, PW[BOB]) as c:
        c.select_folder("INBOX")
        c.idle()
        try:
            _subject, raw = _message(BOB)
            t0 = time.monotonic()
            _send(ms, BOB, raw)
            pushed = None
            while time.monotonic() - t0 < 2.0 and pushed is None:
                for resp in c.idle_check(timeout=0.2):
                    if len(resp) >= 2 and resp[1] == b"EXISTS":
                        pushed = time.monotonic() - t0
        finally:
            c.idle_done()
    assert pushed is not None and pushed < 2.0, f"no EXISTS within 2 s\n{ms.log_text()[-3000:]}"


def test_append_to_sent_and_special_use_folders(ms: MailServers) -> None:
    with _imap(ms, ALICE, PW[ALICE]) as c:
        sent = c.find_special_folder(b"\\Sent")
        assert sent == "Sent"
        for flag, name in [(b"\\Drafts", "Drafts"), (b"\\Trash", "Trash"), (b"\\Junk", "Junk"), (b"\\Archive", "Archive")]:
            assert c.find_special_folder(flag) == name
        subs = {f[2] for f in c.list_sub_folders()}
        assert {"Sent", "Drafts", "Trash", "Junk", "Archive"} <= subs
        subject, raw = _message("x@elsewhere.example", sender=ALICE)
        c.append(sent, raw, flags=[b"\\Seen"])
        c.select_folder(sent, readonly=True)
        assert c.search(["HEADER", "Subject", subject])


def test_imaps_and_starttls(ms: MailServers) -> None:
    if ms.imaps_port is None:
        pytest.fail("no openssl: no certificate, no IMAPS (scripts/install-mailservers.sh installs it)")
    assert ms.tls_cert is not None
    ctx = ssl.create_default_context(cafile=str(ms.tls_cert))
    with IMAPClient("127.0.0.1", ms.imaps_port, ssl=True, ssl_context=ctx, timeout=10) as c:
        c.login(ALICE, PW[ALICE])
        assert c.select_folder("INBOX")
    with IMAPClient("127.0.0.1", ms.imap_port, ssl=False, timeout=10) as c:
        assert b"STARTTLS" in c.capabilities()
        c.starttls(ctx)
        c.login(ALICE, PW[ALICE])


def test_submission_starttls_when_asked(tmp_path: Path) -> None:
    with MailServers(tmp_path / "tls", smtp_starttls=True) as ms:
        if ms.tls_cert is None:
            pytest.fail("no openssl: no certificate (scripts/install-mailservers.sh installs it)")
        ms.add_user(ALICE, PW[ALICE], wait=False)
        ctx = ssl.create_default_context(cafile=str(ms.tls_cert))
        with smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            s.starttls(context=ctx)
            s.login(ALICE, PW[ALICE])
    # off by default: clients that upgrade whenever STARTTLS is offered (aiosmtplib) would fail
    # to verify the self-signed certificate
    with MailServers(tmp_path / "plain") as ms, smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("starttls")


def test_add_and_remove_user_take_effect_at_once(ms: MailServers) -> None:
    carol = "carol@mail.test"
    ms.add_user(carol, "carol-pw")
    PW[carol] = "carol-pw"
    try:
        subject, raw = _message(carol)
        _send(ms, carol, raw)
        _wait_subject(ms, carol, subject)
        ms.remove_user(carol)
        with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as s:
            s.mail("someone@outside.example")
            assert s.rcpt(carol)[0] == 550
        with pytest.raises(imaplib.IMAP4.error):
            _imap(ms, carol, "carol-pw")
    finally:
        PW.pop(carol)


def test_relay_to_smarthost_sink(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    from tests.mailservers import _free_ports

    got: list[tuple[str, list[str], bytes]] = []
    arrived = threading.Event()

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            arrived.set()
            return "250 OK"

    sink = Controller(Sink(), hostname="127.0.0.1", port=_free_ports(1)[0])
    sink.start()
    try:
        with MailServers(tmp_path / "relay", relay_to=("127.0.0.1", sink.port)) as ms:
            ms.add_user(ALICE, PW[ALICE])
            subject, raw = _message("x@elsewhere.example", sender=ALICE)
            with smtplib.SMTP("127.0.0.1", ms.submission_port, timeout=10) as s:
                s.login(ALICE, PW[ALICE])
                s.sendmail(ALICE, ["x@elsewhere.example"], raw)
            assert arrived.wait(10), ms.log_text()[-3000:]
            # the MX port still relays nothing, even with a smarthost configured
            with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as s:
                s.mail("someone@outside.example")
                assert s.rcpt("y@elsewhere.example")[0] == 554
    finally:
        sink.stop()
    assert got[0][0] == ALICE and got[0][1] == ["x@elsewhere.example"]
    assert subject.encode() in got[0][2]


def _our_processes(ms: MailServers) -> list[str]:
    """Processes whose command line or config mentions this instance's root."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if str(ms.root) in cmd or (ms.base_dir and str(ms.base_dir) in cmd):
            found.append(f"{pid} {comm} {cmd}")
    return found


def _group_members(pgids: set[int]) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) in pgids:
                out.append(int(pid))
    return out


def test_stop_frees_ports_and_leaves_no_process(tmp_path: Path) -> None:
    ms = MailServers(tmp_path / "ms")
    ms.start()
    assert ms.start_seconds is not None and ms.start_seconds < 5
    ports = {ms.smtp_port, ms.submission_port, ms.imap_port} | ({ms.imaps_port} if ms.imaps_port else set())
    assert ports <= _listening()
    assert len(ports) == (4 if ms.imaps_port else 3)
    assert ms._postfix is not None and ms._dovecot is not None
    assert ms._watchdog is not None
    master = ms._postfix_master_pid()
    pgids = {ms._dovecot.pid, ms._postfix.pid, ms._watchdog.pid, master or -1}
    assert _our_processes(ms)
    # clients still connected do not hold the stop up
    ms.add_user(ALICE, PW[ALICE], wait=False)
    ms.add_user(BOB, PW[BOB])
    idler = _imap(ms, ALICE, PW[ALICE])
    idler.select_folder("INBOX")
    idler.idle()
    smtp = smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10)
    smtp.mail("someone@outside.example")
    ms.stop()
    assert ms.stop_seconds is not None and ms.stop_seconds < 5
    assert not ports & _listening()
    assert _group_members(pgids) == []
    assert _our_processes(ms) == []
    ms.stop()  # idempotent
    # and it starts again, on fresh ports, from the same root
    with ms:
        assert {ms.smtp_port, ms.imap_port} <= _listening()
    assert not {ms.smtp_port, ms.imap_port} & _listening()


def test_function_fixture_is_fast(mailservers: MailServers) -> None:  # noqa: F811
    assert mailservers.start_seconds is not None and mailservers.start_seconds < 2
    mailservers.add_user("dave@mail.test", "pw")
    with smtplib.SMTP("127.0.0.1", mailservers.smtp_port, timeout=10) as s:
        s.mail("a@b.example")
        assert s.rcpt("dave@mail.test")[0] == 250


def test_servers_stop_by_themselves_when_the_test_process_dies(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tests.mailservers import MailServers\n"
        f"ms = MailServers(Path({str(tmp_path / 'orphan')!r})).start()\n"
        "print(ms.smtp_port, ms.submission_port, ms.imap_port, ms.imaps_port or 0, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr
    ports = {int(p) for p in proc.stdout.split() if p != "0"}
    assert len(ports) >= 3
    deadline = time.monotonic() + 10
    while ports & _listening() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ports & _listening(), "the watchdog did not stop the orphaned servers"
    orphan = MailServers(tmp_path / "orphan")
    while _our_processes(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _our_processes(orphan) == []
