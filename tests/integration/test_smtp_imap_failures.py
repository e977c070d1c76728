"""How the smtp_imap backend behaves when things go wrong, on real Postfix + Dovecot (no mocks):
a server process killed with SIGKILL in the middle of a sync, a mailbox whose UIDVALIDITY
changes, an IMAP server that is unreachable / refuses our login / speaks no TLS, a submission
server that is down, refuses our credentials or refuses a recipient (5xx and 4xx), a mailbox
deleted while its worker runs, and a crash between handing a message over and recording that.

Every scenario checks the same two things from the outside: nothing is missing and nothing is
there twice — in our store, and in the mailboxes on the IMAP server.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import imapclient
import pytest
from sqlmodel import select

from inbox_mcp.errors import BackendUnavailable
from inbox_mcp.service import AgentRef, Service, build_service
from inbox_mcp.settings import Settings
from inbox_mcp.store.tables import Message, Outbox, utcnow
from tests.conftest import BIN, REPO, free_port, stop_process, wait_port
from tests.mailservers import MailServers

DOMAIN = "mail.test"
SUBMIT = (f"submit@{DOMAIN}", "submit-pw")


# --- harness ------------------------------------------------------------------------------------


class TempfailServers(MailServers):
    """MailServers whose submission service answers RCPT TO for the addresses listed in
    ``access_file`` with the reply given there (``carol@mail.test 450 4.2.0 try later``): a real
    4xx from Postfix (check_recipient_access), switched off again with ``set_tempfail([])``."""

    @property
    def access_file(self) -> Path:
        return self.postfix_dir / "tempfail"

    def _master_cf(self) -> str:
        if not self.access_file.exists():
            self.access_file.write_text("")
        marker = "  -o smtpd_sasl_auth_enable=yes\n"
        text = super()._master_cf()
        assert marker in text
        extra = f"  -o smtpd_recipient_restrictions=check_recipient_access,texthash:{self.access_file}\n"
        return text.replace(marker, marker + extra, 1)

    def set_tempfail(self, lines: list[str]) -> None:
        self.access_file.write_text("".join(line + "\n" for line in lines))
        past = time.time() - 60  # Postfix waits for a table younger than ~1 s to settle
        os.utime(self.access_file, (past, past))
        self.reload_postfix()


def _start(ms: MailServers) -> MailServers:
    # The submission login is written before start-up: adding it afterwards costs a Postfix reload.
    for d in (ms.dovecot_dir, ms.postfix_dir):
        d.mkdir(parents=True, exist_ok=True)
    ms.add_user(*SUBMIT)
    return ms.start()


@pytest.fixture
def ms(tmp_path: Path) -> Iterator[MailServers]:
    servers = _start(MailServers(tmp_path / "ms", DOMAIN, tls=False))  # no certificate to make
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def ms_tls(tmp_path: Path) -> Iterator[MailServers]:
    """With a self-signed certificate and an implicit-TLS IMAP port."""
    servers = _start(MailServers(tmp_path / "ms", DOMAIN))
    try:
        assert servers.imaps_port, "no certificate: openssl missing?"
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def ms_tempfail(tmp_path: Path) -> Iterator[TempfailServers]:
    servers = TempfailServers(tmp_path / "ms", DOMAIN, tls=False)
    _start(servers)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Every Service a test builds, so each one's sync workers are stopped at the end."""
    built: list[Service] = []
    yield built
    for svc in built:
        svc.backend.stop()


def roomy_policy(tmp: Path) -> Path:
    d = tmp / "policies"
    if not d.exists():
        d.mkdir()
        text = (REPO / "policies" / "default.toml").read_text()
        text = text.replace("hold_first_contact = true", "hold_first_contact = false")
        text = text.replace("per_minute = 5\n", "per_minute = 1000\n").replace("per_hour = 10\n", "per_hour = 1000\n")
        text = text.replace("per_day = 10\n", "per_day = 1000\n").replace("new_per_hour = 3", "new_per_hour = 1000")
        (d / "default.toml").write_text(text)
    return d


def make_settings(ms: MailServers, tmp: Path, **over: object) -> Settings:
    values: dict[str, object] = {
        "home": tmp / "home", "domain": DOMAIN, "policy_dir": roomy_policy(tmp), "auth_dns": "off",
        "backend": "smtp_imap", "smtp_listen": f"127.0.0.1:{free_port()}",
        "smtp_host": "127.0.0.1", "smtp_port": ms.submission_port, "smtp_tls": "none",
        "smtp_username": SUBMIT[0], "smtp_password": SUBMIT[1],
        "imap_host": "127.0.0.1", "imap_port": ms.imap_port, "imap_tls": "none",
        "imap_username": ms.master_user, "imap_password": ms.master_password, "imap_poll_s": 1,
        "dovecot_users_file": ms.users_file, "postfix_recipients_file": ms.postfix_recipients_file,
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as INBOX_MCP_* environment variables, for a server subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_MCP_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[f"INBOX_MCP_{name.upper()}"] = str(value)
    return env


def build(services: list[Service], settings: Settings, listen: bool = True) -> Service:
    svc = build_service(settings, listen=listen)
    services.append(svc)
    return svc


def wait_until(pred: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@contextmanager
def master(ms: MailServers, address: str) -> Iterator[imapclient.IMAPClient]:
    """An IMAP session on ``address``'s mailbox, as the Dovecot master user."""
    c = imapclient.IMAPClient("127.0.0.1", port=ms.imap_port, ssl=False, timeout=10)
    c.login(f"{address}*{ms.master_user}", ms.master_password)
    try:
        yield c
    finally:
        c.logout()


def server_copies(ms: MailServers, address: str, message_id: str, folder: str = "INBOX") -> int:
    """How many messages with this Message-ID the IMAP server holds in ``folder``."""
    with master(ms, address) as c:
        c.select_folder(folder, readonly=True)
        return len(c.search(["HEADER", "Message-ID", message_id]))


def mail_bytes(to: str, n: int, tag: str = "m", size: int = 0) -> bytes:
    body = f"message {n} of the {tag} batch\r\n" + ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    return (
        f"From: Sender {n} <sender{n}@outside.example>\r\nTo: {to}\r\nSubject: {tag} number {n}\r\n"
        f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMessage-ID: <{tag}.{n}@outside.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def db_path(settings: Settings) -> Path:
    return settings.home / "inbox.db"


def sql(settings: Settings, query: str, *args: object) -> list[tuple]:
    """A read straight from the SQLite file (a second process may be writing it: WAL)."""
    con = sqlite3.connect(db_path(settings), timeout=10)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def stored_count(settings: Settings, inbox_id: str) -> int:
    try:
        return sql(settings, "SELECT COUNT(*) FROM message WHERE inbox_id = ?", inbox_id)[0][0]
    except sqlite3.OperationalError:  # the server process has not created the schema yet
        return 0


def stored_duplicates(settings: Settings, inbox_id: str) -> list[tuple]:
    return sql(
        settings,
        "SELECT message_id_header, COUNT(*) FROM message WHERE inbox_id = ? GROUP BY message_id_header HAVING COUNT(*) > 1",
        inbox_id,
    )


def setup_inbox(svc: Service, name: str) -> tuple[AgentRef, str, str]:
    agent, _key = svc.create_agent(name)
    inbox = svc.provision_inbox(agent, name)
    return agent, inbox.inbox_id, inbox.address


# --- 1. SIGKILL in the middle of a sync ---------------------------------------------------------


class ServeProcess:
    """``inbox-mcp serve --transport http`` on the smtp_imap backend, as a real subprocess."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        self.log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--transport", "http", "--port", str(self.port)],
            env=settings_env(settings), stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def test_sigkill_mid_sync_then_restart_stores_every_message_once(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    n = 400
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings, listen=False)
    _bob, inbox_id, address = setup_inbox(svc, "bob")
    svc.backend.stop()  # from here on only the server subprocess syncs
    with master(ms, address) as c:
        c.multiappend("INBOX", [mail_bytes(address, i, "crash", size=6000) for i in range(n)])
        status = c.select_folder("INBOX", readonly=True)
        server_uids = sorted(c.search(["ALL"]))
    assert len(server_uids) == n

    procs = []
    try:
        p = ServeProcess(settings, tmp_path / "serve.log")
        procs.append(p)
        wait_until(lambda: stored_count(settings, inbox_id) >= n // 4, 30, f"{n // 4} messages stored", every=0.005)
        p.kill9()
        killed_at = stored_count(settings, inbox_id)
        assert killed_at < n, "the sync finished before the kill: nothing was tested"
        p = ServeProcess(settings, tmp_path / "serve.log")
        procs.append(p)
        wait_until(lambda: stored_count(settings, inbox_id) >= n, 40, f"all {n} messages stored after the restart")
        wait_port(p.port)
        time.sleep(1.0)  # a poll round more: nothing may arrive twice
        assert p.proc.poll() is None, "the restarted server exited"
    finally:
        for p in procs:
            p.stop()

    assert stored_count(settings, inbox_id) == n, f"killed at {killed_at}"
    assert stored_duplicates(settings, inbox_id) == []
    ids = {r[0] for r in sql(settings, "SELECT message_id_header FROM message WHERE inbox_id = ?", inbox_id)}
    assert ids == {f"<crash.{i}@outside.example>" for i in range(n)}
    (uidvalidity, last_uid), = sql(settings, "SELECT uidvalidity, last_uid FROM imapstate WHERE inbox_id = ?", inbox_id)
    assert uidvalidity == status[b"UIDVALIDITY"] and last_uid == max(server_uids)
    rows = sql(settings, "SELECT uid FROM imapmessage WHERE inbox_id = ? AND uidvalidity = ?", inbox_id, uidvalidity)
    assert sorted(r[0] for r in rows) == server_uids, "every server UID is linked to exactly one stored message"


# --- 2. UIDVALIDITY changes -----------------------------------------------------------------------


def doveadm(ms: MailServers, *args: str) -> str:
    r = subprocess.run(
        ["doveadm", "-c", str(ms.dovecot_dir / "dovecot.conf"), *args], capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 0, f"doveadm {' '.join(args)}: {r.stderr}"
    return r.stdout


def server_uid_of(ms: MailServers, address: str) -> tuple[int, dict[str, int]]:
    """(UIDVALIDITY, {Message-ID: UID}) of the INBOX on the server."""
    with master(ms, address) as c:
        status = c.select_folder("INBOX", readonly=True)
        uids = c.search(["ALL"])
        data = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    out = {}
    for uid, item in data.items():
        header = item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip()
        out[header] = uid
    return int(status[b"UIDVALIDITY"]), out


def imap_links(settings: Settings, inbox_id: str) -> dict[str, tuple[int, int]]:
    """{Message-ID: (uidvalidity, uid)} as the store links its messages to server positions."""
    rows = sql(
        settings,
        "SELECT m.message_id_header, i.uidvalidity, i.uid FROM imapmessage i JOIN message m ON m.pk = i.message_pk WHERE i.inbox_id = ?",
        inbox_id,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def imap_sessions(ms: MailServers, address: str) -> int:
    """Open IMAP sessions of ``address`` (doveadm who)."""
    out = doveadm(ms, "who", "-1", address)
    return sum(1 for line in out.splitlines()[1:] if line.split() and line.split()[0] == address)


def links_match_server(settings: Settings, inbox_id: str, ms: MailServers, address: str) -> bool:
    v, positions = server_uid_of(ms, address)
    return imap_links(settings, inbox_id) == {mid: (v, uid) for mid, uid in positions.items()}


def test_uidvalidity_change_neither_duplicates_nor_misses(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    _bob, inbox_id, address = setup_inbox(svc, "bob")
    with master(ms, address) as c:
        c.multiappend("INBOX", [mail_bytes(address, i, "old") for i in range(20)])
    svc.backend.sync_now(inbox_id)
    assert stored_count(settings, inbox_id) == 20
    v1, _ = server_uid_of(ms, address)
    svc.backend.stop()
    wait_until(lambda: imap_sessions(ms, address) == 0, 5, "the worker's IMAP session to end")

    # The mailbox is re-created behind our back (as a restore or a server migration does): new
    # UIDVALIDITY, and UIDs start again at 1 — new messages first, so they take UIDs the old epoch
    # already used, then the old messages (same bytes, renumbered), then more new ones.
    with master(ms, address) as c:
        c.create_folder("Restored")
        c.select_folder("INBOX")
        c.move(c.search(["ALL"]), "Restored")
    maildir = ms.mailbox_path(address)  # INBOX's own index files live at the Maildir root
    for f in maildir.iterdir():
        if f.is_file() and (f.name == "dovecot-uidlist" or f.name.startswith("dovecot.index")):
            f.unlink()
    with master(ms, address) as c:
        c.multiappend("INBOX", [mail_bytes(address, i, "new") for i in range(5)])
        c.select_folder("Restored")
        c.move(c.search(["ALL"]), "INBOX")
        c.unselect_folder()
        c.multiappend("INBOX", [mail_bytes(address, i, "new") for i in range(5, 10)])
    v2, positions = server_uid_of(ms, address)
    assert v2 != v1 and len(positions) == 30
    assert max(positions[f"<new.{i}@outside.example>"] for i in range(5)) <= 20, "new mail reuses old UIDs"

    svc = build(services, settings)  # the server process starts again
    bob = _bob
    svc.backend.sync_now(inbox_id)
    assert links_match_server(settings, inbox_id, ms, address)
    assert stored_duplicates(settings, inbox_id) == []
    assert stored_count(settings, inbox_id) == 30
    (state_v, last_uid), = sql(settings, "SELECT uidvalidity, last_uid FROM imapstate WHERE inbox_id = ?", inbox_id)
    assert (state_v, last_uid) == (v2, max(positions.values()))

    # A label change on an old message lands on that message on the server, not on the new
    # message that now holds its old UID.
    old0 = svc.search(bob, 'subject:"old number 0"', inbox_id=inbox_id).messages
    assert len(old0) == 1
    svc.update_labels(bob, message_id=old0[0].message_id, remove=["unread"])
    with master(ms, address) as c:
        c.select_folder("INBOX", readonly=True)
        seen = {uid for uid, flags in c.get_flags(c.search(["ALL"])).items() if b"\\Seen" in flags}
    assert seen == {positions["<old.0@outside.example>"]}

    # Only the UIDVALIDITY changes (UIDs kept, as `doveadm mailbox update` or a botched restore
    # does) while the worker is connected, and one new message arrives.
    doveadm(ms, "mailbox", "update", "--uid-validity", str(v2 + 7), "-u", address, "INBOX")
    with master(ms, address) as c:
        c.append("INBOX", mail_bytes(address, 99, "new"))
    svc.backend.sync_now(inbox_id)
    assert links_match_server(settings, inbox_id, ms, address)
    assert stored_duplicates(settings, inbox_id) == []
    assert stored_count(settings, inbox_id) == 31


def test_mail_arriving_during_a_sync_is_not_left_for_the_next_idle_round(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    """A message delivered while the worker is busy storing a batch is announced (EXISTS) in the
    responses to the worker's own FETCH commands, not to its next IDLE: the worker must look
    again before it waits, else the message sits on the server until other mail arrives (or the
    IDLE is renewed, 5 minutes later)."""
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    _bob, inbox_id, address = setup_inbox(svc, "bob")
    wait_until(lambda: sql(settings, "SELECT 1 FROM imapstate WHERE inbox_id = ?", inbox_id), 10, "the first (empty) sync")
    with master(ms, address) as c:
        c.multiappend("INBOX", [mail_bytes(address, i, "batch") for i in range(100)])
    wait_until(lambda: stored_count(settings, inbox_id) >= 1, 10, "the worker to start storing the batch", every=0.005)
    with master(ms, address) as c:
        c.append("INBOX", mail_bytes(address, 0, "late"))
    during = stored_count(settings, inbox_id)
    assert during < 100, "the batch was stored before the late message arrived: nothing was tested"
    wait_until(lambda: stored_count(settings, inbox_id) >= 101, 10, "the message that arrived during the sync")


# --- 3. IMAP server unreachable, wrong credentials, TLS mismatch -----------------------------------


def test_missing_imap_settings_are_named(ms: MailServers, tmp_path: Path) -> None:
    from inbox_mcp.backends.smtp_imap import SmtpImapBackend

    with pytest.raises(BackendUnavailable) as e:
        SmtpImapBackend(make_settings(ms, tmp_path, imap_host=None, imap_password=None))
    assert "INBOX_MCP_IMAP_HOST" in str(e.value) and "INBOX_MCP_IMAP_PASSWORD" in str(e.value)


def test_imap_failures_are_clear_logged_and_recoverable(
    ms_tls: MailServers, tmp_path: Path, services: list[Service], caplog: pytest.LogCaptureFixture
) -> None:
    ms = ms_tls
    caplog.set_level(logging.WARNING, logger="inbox_mcp")
    good = make_settings(ms, tmp_path)
    svc = build(services, good)
    bob, inbox_id, address = setup_inbox(svc, "bob")
    with master(ms, address) as c:
        c.append("INBOX", mail_bytes(address, 1, "before"))
    svc.backend.sync_now(inbox_id)
    stored = svc.search(bob, "subject:before", inbox_id=inbox_id).messages
    assert len(stored) == 1
    svc.backend.stop()

    closed = free_port()
    cases = {
        "unreachable": ({"imap_port": closed}, [f"127.0.0.1:{closed}", "Connection refused"]),
        "wrong master password": ({"imap_password": "not-the-password"}, ["refused", "AUTHENTICATIONFAILED", "Authentication failed"]),
        "implicit TLS to the plain port": ({"imap_tls": "implicit"}, [f"127.0.0.1:{ms.imap_port}", "SSL"]),
    }
    cases["self-signed certificate, verification on"] = (
        {"imap_tls": "implicit", "imap_port": ms.imaps_port, "tls_verify": True}, ["CERTIFICATE_VERIFY_FAILED"],
    )
    for name, (over, words) in cases.items():
        caplog.clear()
        t0 = time.monotonic()
        bad = build(services, make_settings(ms, tmp_path, **over))  # building never needs the server
        with pytest.raises(BackendUnavailable) as e:
            bad.backend.sync_now(inbox_id)
        assert time.monotonic() - t0 < 5, f"{name}: the failure took {time.monotonic() - t0:.1f} s"
        text = str(e.value)
        assert text.startswith("backend_unavailable: "), text
        for w in words:
            assert w in text, f"{name}: {w!r} not in {text!r}"
        assert "b'" not in text, f"{name}: the server's words are shown as a Python bytes literal: {text!r}"
        # The worker logs the same failure (and backs off); reads keep working meanwhile.
        wait_until(lambda: any("IMAP sync of bob@" in r.getMessage() for r in caplog.records), 5, f"{name}: a log line")
        line = next(r.getMessage() for r in caplog.records if "IMAP sync of bob@" in r.getMessage())
        assert words[-1] in line and "retrying in" in line, line
        assert [m.subject for m in bad.search(bob, "subject:before", inbox_id=inbox_id).messages] == ["before number 1"]
        assert bad.read_message(bob, stored[0].message_id).subject == "before number 1"
        assert len(bad.list_threads(bob, inbox_id).threads) == 1
        bad.backend.stop()

    # The operator fixes the configuration: the next server process syncs what arrived meanwhile.
    with master(ms, address) as c:
        c.append("INBOX", mail_bytes(address, 2, "after"))
    fixed = build(services, good)
    wait_until(lambda: fixed.search(bob, "subject:after", inbox_id=inbox_id).messages, 10, "the fixed config to sync")
    assert stored_count(good, inbox_id) == 2 and stored_duplicates(good, inbox_id) == []
    # and implicit TLS with verification off works against the self-signed certificate
    tls = build(services, make_settings(ms, tmp_path, imap_tls="implicit", imap_port=ms.imaps_port, tls_verify=False))
    assert tls.backend.sync_now(inbox_id) == 0


# --- 4. Outbound: submission server down, wrong credentials, 5xx and 4xx --------------------------


class TcpRelay:
    """A plain TCP forwarder to ``target`` on a port of its own, switched on and off: the
    submission server as the service sees it going away and coming back."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self._conns.clear()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def outbox_row(svc: Service, message_id: str) -> Outbox:
    with svc.db.read() as s:
        msg = s.exec(select(Message).where(Message.id == message_id)).one()
        return s.exec(select(Outbox).where(Outbox.message_pk == msg.pk)).one()


def make_due(svc: Service, outbox_id: str, status: str | None = None, ago: timedelta = timedelta(seconds=1)) -> None:
    """Move an outbox row's next attempt into the past (and optionally set its status, as a
    crash would leave it)."""
    with svc.db.write() as s:
        box = s.get(Outbox, outbox_id)
        assert box is not None
        box.next_attempt_at = utcnow() - ago
        if status is not None:
            box.status = status
            msg = s.get(Message, box.message_pk)
            assert msg is not None
            msg.status = "queued"
            s.add(msg)
        s.add(box)


def message_id_header(svc: Service, message_id: str) -> str:
    with svc.db.read() as s:
        return s.exec(select(Message.message_id_header).where(Message.id == message_id)).one()  # type: ignore[return-value]


def settle(ms: MailServers, address: str, mid: str, want: int, folder: str = "INBOX", timeout: float = 10) -> int:
    """Wait until ``want`` copies are on the server (Postfix delivers asynchronously), then a
    little longer so that a second copy on its way would show; return the count."""
    wait_until(lambda: server_copies(ms, address, mid, folder) >= want, timeout, f"{want} copies of {mid} in {address}/{folder}")
    time.sleep(0.3)
    return server_copies(ms, address, mid, folder)


def two_agents(svc: Service) -> tuple[AgentRef, str, str, AgentRef, str, str]:
    alice, a_id, a_addr = setup_inbox(svc, "alice")
    bob, b_id, b_addr = setup_inbox(svc, "bob")
    return alice, a_id, a_addr, bob, b_id, b_addr


def test_submission_server_down_queues_then_delivers_exactly_once(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    relay = TcpRelay(ms.submission_port)
    try:
        settings = make_settings(ms, tmp_path, smtp_port=relay.port)
        svc = build(services, settings)
        alice, a_id, a_addr, _bob, _b_id, b_addr = two_agents(svc)
        ms.reload_postfix()
        sent = svc.send_message(alice, a_id, [b_addr], "While the server was down", text="hello")
        assert sent.status == "queued" and sent.delivered == [] and sent.failed == {}
        assert list(sent.deferred) == [b_addr] and "unreachable" in sent.deferred[b_addr], sent.deferred
        assert svc.read_message(alice, sent.message_id).delivery_status == "queued"
        row = outbox_row(svc, sent.message_id)
        assert row.status == "queued" and row.attempts == 1 and "unreachable" in (row.last_error or "")
        assert row.next_attempt_at > utcnow(), "the retry is scheduled with a delay, not at once"

        assert svc.dispatch_due() == 0, "not due yet"
        make_due(svc, row.id)
        assert svc.dispatch_due() == 1  # still down: queued again, with the attempt counted
        row = outbox_row(svc, sent.message_id)
        assert row.status == "queued" and row.attempts == 2

        relay.up()
        make_due(svc, row.id)
        assert svc.dispatch_due() == 1
        row = outbox_row(svc, sent.message_id)
        assert row.status == "sent" and row.attempts == 3 and row.last_error is None
        assert svc.read_message(alice, sent.message_id).delivery_status == "sent"
        mid = message_id_header(svc, sent.message_id)
        assert settle(ms, b_addr, mid, 1) == 1
        assert settle(ms, a_addr, mid, 1, folder="Sent") == 1
        make_due(svc, row.id)
        assert svc.dispatch_due() == 0, "a sent row is never sent again"
        assert settle(ms, b_addr, mid, 1) == 1
    finally:
        relay.down()


def test_wrong_smtp_credentials_defer_with_the_servers_words(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    """535 is about our credentials, not about the message or its recipient: the message must
    wait in the outbox (with the server's words) until an operator fixes the password, as
    Postfix's own SMTP client does (smtp_sasl_auth_soft_bounce = yes), instead of failing for good."""
    settings = make_settings(ms, tmp_path, smtp_password="wrong-password")
    svc = build(services, settings)
    alice, a_id, _a_addr, _bob, _b_id, b_addr = two_agents(svc)
    ms.reload_postfix()
    sent = svc.send_message(alice, a_id, [b_addr], "With a wrong password", text="hello")
    reason = {**sent.deferred, **sent.failed}.get(b_addr, "")
    assert reason.startswith("535") and "authentication failed" in reason.lower(), (sent.deferred, sent.failed)
    assert sent.status == "queued" and list(sent.deferred) == [b_addr] and sent.failed == {}, (
        f"observed status={sent.status!r} deferred={sent.deferred} failed={sent.failed}: "
        "a credentials problem made the message fail permanently"
    )
    row = outbox_row(svc, sent.message_id)
    assert row.status == "queued"
    svc.backend.stop()

    fixed = build(services, make_settings(ms, tmp_path))  # the operator fixes the password
    make_due(fixed, row.id)
    assert fixed.dispatch_due() == 1
    assert fixed.read_message(alice, sent.message_id).delivery_status == "sent"
    assert settle(ms, b_addr, message_id_header(fixed, sent.message_id), 1) == 1


def test_unknown_local_recipient_fails_with_550_and_the_others_get_it(ms: MailServers, tmp_path: Path, services: list[Service]) -> None:
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    alice, a_id, a_addr, _bob, _b_id, b_addr = two_agents(svc)
    ms.reload_postfix()
    nobody = f"nobody@{DOMAIN}"

    only = svc.send_message(alice, a_id, [nobody], "To nobody", text="?")
    assert only.status == "sent" and only.delivered == [] and list(only.failed) == [nobody]  # "sent" = done, see delivery_status
    assert only.failed[nobody].startswith("550") and nobody in only.failed[nobody], only.failed
    assert svc.read_message(alice, only.message_id).delivery_status == "failed"
    row = outbox_row(svc, only.message_id)
    assert row.status == "failed" and row.last_error and "550" in row.last_error
    make_due(svc, row.id)
    assert svc.dispatch_due() == 0, "a permanent failure is not retried"

    mixed = svc.send_message(alice, a_id, [b_addr, nobody], "To bob and nobody", text="for both of you")
    assert mixed.delivered == [b_addr] and list(mixed.failed) == [nobody] and mixed.deferred == {}
    assert svc.read_message(alice, mixed.message_id).delivery_status == "sent"
    mid = message_id_header(svc, mixed.message_id)
    assert settle(ms, b_addr, mid, 1) == 1
    assert server_copies(ms, a_addr, message_id_header(svc, only.message_id), "Sent") == 0, "nothing went out"


def test_4xx_recipient_is_retried_alone_and_sent_copy_is_not_duplicated(
    ms_tempfail: TempfailServers, tmp_path: Path, services: list[Service]
) -> None:
    ms = ms_tempfail
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    alice, a_id, a_addr, _bob, _b_id, b_addr = two_agents(svc)
    _carol, _c_id, c_addr = setup_inbox(svc, "carol")
    ms.set_tempfail([f"{c_addr} 450 4.2.0 mailbox busy, try again later"])

    sent = svc.send_message(alice, a_id, [b_addr, c_addr], "Partly deferred", text="hello both")
    assert sent.status == "queued" and sent.delivered == [b_addr], sent
    assert list(sent.deferred) == [c_addr] and sent.deferred[c_addr].startswith("450") and "try again later" in sent.deferred[c_addr]
    row = outbox_row(svc, sent.message_id)
    assert row.status == "queued" and json_list(row.recipients) == [c_addr]
    mid = message_id_header(svc, sent.message_id)

    ms.set_tempfail([])
    make_due(svc, row.id)
    assert svc.dispatch_due() == 1
    assert outbox_row(svc, sent.message_id).status == "sent"
    assert svc.read_message(alice, sent.message_id).delivery_status == "sent"
    assert settle(ms, c_addr, mid, 1) == 1
    assert settle(ms, b_addr, mid, 1) == 1, "bob got it on the first attempt and not again"
    assert settle(ms, a_addr, mid, 1, folder="Sent") == 1, "one message, one copy in Sent"


def json_list(text: str) -> list[str]:
    return json.loads(text)


# --- 5. A mailbox deleted behind our back --------------------------------------------------------


def inject(ms: MailServers, rcpt: str, raw: bytes) -> None:
    """Mail from the internet: into Postfix's port 25 service, which delivers to Dovecot."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", ms.smtp_port, timeout=10) as smtp:
        smtp.sendmail("someone@outside.example", [rcpt], raw)


def sync_failures(caplog: pytest.LogCaptureFixture, address: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if f"IMAP sync of {address} failed" in r.getMessage()]


def test_mailbox_removed_behind_our_back_backs_off_and_resumes(
    ms: MailServers, tmp_path: Path, services: list[Service], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="inbox_mcp")
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    bob, inbox_id, address = setup_inbox(svc, "bob")
    ms.reload_postfix()
    inject(ms, address, mail_bytes(address, 1, "first"))
    wait_until(lambda: stored_count(settings, inbox_id) == 1, 10, "the first message synced")
    wait_until(lambda: imap_sessions(ms, address) == 1, 5, "the worker's IDLE session")

    ms.remove_user(address)           # gone from Dovecot's passwd-file and Postfix's map
    doveadm(ms, "kick", address)      # and its open sessions ended, as an admin deleting it does
    wait_until(
        lambda: sync_failures(caplog, address), 5,
        "the worker to notice that the server closed its IDLE connection (a failure logged)",
    )
    wait_until(lambda: len(sync_failures(caplog, address)) >= 3, 10, "three failed reconnects")
    fails = sync_failures(caplog, address)
    gaps = [b.created - a.created for a, b in itertools.pairwise(fails)]
    assert gaps[1] > gaps[0] * 1.5, f"retries back off: gaps {gaps}"
    assert any("refused" in r.getMessage() for r in fails[1:]), [r.getMessage() for r in fails]

    # The service stays up: reads work, and other inboxes can be provisioned meanwhile.
    assert [m.subject for m in svc.search(bob, "subject:first", inbox_id=inbox_id).messages] == ["first number 1"]
    assert svc.list_inboxes(bob).inboxes[0].address == address
    setup_inbox(svc, "dave")

    ms.add_user(address, "back-again")  # the mailbox is restored
    inject(ms, address, mail_bytes(address, 2, "second"))
    wait_until(lambda: stored_count(settings, inbox_id) == 2, 20, "the worker to resume after the mailbox came back")
    assert stored_duplicates(settings, inbox_id) == []


# --- 6. A crash between handing a message over and recording it -----------------------------------


def expunge(ms: MailServers, address: str, mid: str, folder: str) -> None:
    with master(ms, address) as c:
        c.select_folder(folder)
        uids = c.search(["HEADER", "Message-ID", mid])
        assert uids
        c.delete_messages(uids)
        c.expunge()


def stored_with_mid(settings: Settings, inbox_id: str, mid: str) -> int:
    return sql(settings, "SELECT COUNT(*) FROM message WHERE inbox_id = ? AND message_id_header = ?", inbox_id, mid)[0][0]


@pytest.mark.parametrize("sent_copy", ["appended", "not yet appended"])
def test_crash_after_handover_does_not_deliver_twice_to_a_local_recipient(
    ms: MailServers, tmp_path: Path, services: list[Service], sent_copy: str
) -> None:
    """The process dies after the submission server's 250 but before the outbox row is marked:
    the row stays in 'sending' with the claim's time. dispatch_due recovers it after
    STALE_SENDING; bob — in our own domain, whose mailbox we can look into — must still have
    exactly one copy. ("not yet appended": the crash came before the copy reached Sent, too.)"""
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    alice, a_id, a_addr, _bob, b_id, b_addr = two_agents(svc)
    ms.reload_postfix()
    sent = svc.send_message(alice, a_id, [b_addr], "Handed over, then the crash", text="once only")
    assert sent.delivered == [b_addr]
    mid = message_id_header(svc, sent.message_id)
    assert settle(ms, b_addr, mid, 1) == 1
    assert settle(ms, a_addr, mid, 1, folder="Sent") == 1
    if sent_copy == "not yet appended":
        expunge(ms, a_addr, mid, "Sent")

    row = outbox_row(svc, sent.message_id)
    make_due(svc, row.id, status="sending", ago=timedelta(hours=1))  # what the crash left behind
    svc.dispatch_due()
    assert outbox_row(svc, sent.message_id).status == "sent"
    assert svc.read_message(alice, sent.message_id).delivery_status == "sent"
    copies = settle(ms, b_addr, mid, 1)
    wait_until(lambda: stored_with_mid(settings, b_id, mid) >= copies, 10, "bob's worker to sync")
    assert copies == 1, f"bob's mailbox on the server holds {copies} copies of {mid}"
    assert stored_with_mid(settings, b_id, mid) == 1


def test_crash_while_retrying_a_deferred_recipient_still_delivers_to_it(
    ms_tempfail: TempfailServers, tmp_path: Path, services: list[Service]
) -> None:
    """bob got the message on the first attempt (and a copy went to Sent); carol was deferred
    (450). The retry for carol claims the row and the process dies before handing it over. The
    recovered row must still reach carol: a copy in Sent proves only that *someone* got it."""
    ms = ms_tempfail
    settings = make_settings(ms, tmp_path)
    svc = build(services, settings)
    alice, a_id, _a_addr, _bob, _b_id, b_addr = two_agents(svc)
    _carol, _c_id, c_addr = setup_inbox(svc, "carol")
    ms.set_tempfail([f"{c_addr} 450 4.2.0 mailbox busy, try again later"])
    sent = svc.send_message(alice, a_id, [b_addr, c_addr], "Deferred for carol", text="hello both")
    assert sent.delivered == [b_addr] and list(sent.deferred) == [c_addr]
    mid = message_id_header(svc, sent.message_id)

    ms.set_tempfail([])
    row = outbox_row(svc, sent.message_id)
    make_due(svc, row.id, status="sending", ago=timedelta(hours=1))  # claimed for carol, then the crash
    svc.dispatch_due()
    make_due(svc, row.id)  # whatever the recovery scheduled: let it run now
    svc.dispatch_due()
    assert settle(ms, c_addr, mid, 1, timeout=5) == 1, "carol never got the message"
    assert settle(ms, b_addr, mid, 1) == 1
    assert outbox_row(svc, sent.message_id).status == "sent"


def test_submission_over_starttls_and_a_refused_certificate(tmp_path: Path) -> None:
    """Outbound over STARTTLS to the real Postfix: delivered when the certificate is accepted
    (tls_verify off, as for a test CA), deferred with the TLS error when it is verified."""
    servers = MailServers(tmp_path / "tls", "mail.test", smtp_starttls=True).start()
    try:
        servers.add_user("submit@mail.test", "pw")
        servers.add_user("bob@mail.test", "bobpw")
        base = dict(
            home=tmp_path / "home", domain="mail.test", auth_dns="off", backend="smtp_imap",
            smtp_host="127.0.0.1", smtp_port=servers.submission_port, smtp_tls="starttls",
            smtp_username="submit@mail.test", smtp_password="pw", imap_host="127.0.0.1", imap_port=servers.imap_port,
            imap_tls="none", imap_username=servers.master_user, imap_password=servers.master_password,
            smtp_listen="127.0.0.1:0",
        )
        for verify, want in ((False, "sent"), (True, "queued")):
            svc = build_service(Settings(**base, tls_verify=verify), listen=False)
            agent = svc.agent_by_name("alice") if verify else svc.create_agent("alice")[0]
            inbox = svc.list_inboxes(agent).inboxes[0] if verify else svc.provision_inbox(agent, "alice")
            got = svc.send_message(agent, inbox.inbox_id, ["bob@mail.test"], f"tls verify={verify}", text=f"over starttls {verify}")
            assert got.status == want, got
            if want == "queued":
                assert "certificate" in " ".join(got.deferred.values()).lower(), got.deferred
            svc.backend.stop()
        with imapclient.IMAPClient("127.0.0.1", port=servers.imap_port, ssl=False) as c:
            c.login(f"bob@mail.test*{servers.master_user}", servers.master_password)
            c.select_folder("INBOX")
            assert len(c.search(["SUBJECT", "tls verify=False"])) == 1
            assert c.search(["SUBJECT", "tls verify=True"]) == []
    finally:
        servers.stop()
