"""The real-mail backend: outbound through an SMTP submission server (aiosmtplib), inbound by
syncing each inbox's IMAP mailbox (imapclient), on Postfix + Dovecot or any such pair.

- Outbound: the service's durable outbox hands each message here; the server's 250 is what
  marks it sent. Sent copies are appended to the mailbox's Sent folder.
- Inbound: one worker thread per inbox keeps an IMAP connection, syncs new UIDs (tracked with
  UIDVALIDITY in the store, moved in the same transaction as each message), then waits in IDLE
  (or polls where the server has no IDLE), reconnecting with backoff.
- Flags: ``\\Seen`` mirrors the ``unread`` label, ``$Junk`` the ``spam`` label, and user labels
  that are valid IMAP atoms travel as keywords — both ways.
- Provisioning appends the address to Dovecot's passwd-file and Postfix's mailbox map and runs
  the configured reload command.

IMAP and SMTP errors are translated to ``BackendUnavailable`` / delivery results here, in one
place, with the server's own words.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shlex
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import SEEN, SENT

from ..errors import BackendUnavailable
from ..settings import Settings
from .base import DeliveryResult, InboundSink, OutboundMail
from .smarthost import relay

log = logging.getLogger(__name__)

INBOX = "INBOX"
FETCH_BATCH = 200
# UIDs per FLAGS fetch when every known UID must be checked: imapclient lists UIDs one by one and
# Dovecot refuses a command line over 64 KiB (~12,800 UIDs counted from 1, fewer as UIDs grow).
FLAGS_BATCH = 2000
BACKOFF_MAX_S = 60.0
# Sent copies go over cached IMAP connections (a login costs Dovecot a process and an auth
# round trip, ~20 ms: more than the submission itself): at most SENT_CONNS of them, one per
# sending address, least recently used closed first; one idle longer than SENT_IDLE_S is
# replaced rather than trusted.
SENT_CONNS = 8
SENT_IDLE_S = 60.0
SENT_MAX_USES = 1000  # then a new one: imaplib keeps every untagged EXISTS an APPEND brings
IDLE_RENEW_S = 300  # RFC 2177: re-issue IDLE well inside the 29-minute server timeout
ATOM = re.compile(r"^[A-Za-z0-9_.$-]{1,64}$")
SYSTEM_KEYWORDS = {"spam": "$Junk"}


def label_to_keyword(label: str) -> str | None:
    if label in SYSTEM_KEYWORDS:
        return SYSTEM_KEYWORDS[label]
    if label in ("inbox", "sent", "unread", "drafts", "trash"):
        return None  # folders and \Seen carry these
    return label if ATOM.match(label) and not label.startswith("$") else None


def flags_to_labels(flags: list[str]) -> tuple[bool, set[str]]:
    """(unread, labels) from IMAP flags and keywords."""
    unread = "\\Seen" not in flags
    labels: set[str] = set()
    for f in flags:
        if f == "$Junk":
            labels.add("spam")
        elif not f.startswith("\\") and not f.startswith("$") and ATOM.match(f):
            labels.add(f)
    return unread, labels


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _server_words(e: Exception) -> str:
    """imaplib raises login failures with the server's bytes as the argument, so ``str(e)`` reads
    ``b'[AUTHENTICATIONFAILED] Authentication failed.'``: give just the words."""
    text = str(e)
    m = re.fullmatch(r"b(['\"])(.*)\1", text, re.DOTALL)
    return m.group(2) if m else text


class SmtpImapBackend:
    name = "smtp_imap"

    def __init__(self, settings: Settings, inbox_addresses: callable = None, sync: bool = True) -> None:  # type: ignore[valid-type]
        missing = [n for n in ("smtp_host", "imap_host", "imap_username", "imap_password") if not getattr(settings, n)]
        if missing:
            raise BackendUnavailable(
                "the smtp_imap backend needs " + ", ".join(f"INBOX_MCP_{m.upper()}" for m in missing)
            )
        self.settings = settings
        self._sync = sync  # False: a one-shot process (CLI, benchmarks) that must not start workers
        self._inbox_addresses = inbox_addresses
        self._sink: InboundSink | None = None
        self._workers: dict[str, _SyncWorker] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sent: dict[str, _SentConn] = {}  # least recently used first
        self._sent_lock = threading.Lock()

    # --- connections ------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.settings.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    @contextmanager
    def imap(self, address: str) -> Iterator[imapclient.IMAPClient]:
        client = self._login(address)
        try:
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # the connection may already be gone; nothing to clean up then
                pass

    def _login(self, address: str) -> imapclient.IMAPClient:
        s = self.settings
        try:
            client = imapclient.IMAPClient(
                s.imap_host, port=s.imap_port, ssl=s.imap_tls == "implicit",
                ssl_context=self._ssl_context() if s.imap_tls != "none" else None, timeout=30,
            )
            if s.imap_tls == "starttls":
                client.starttls(self._ssl_context())
            client.login(s.imap_login_format.format(address=address, username=s.imap_username), s.imap_password)
        except LoginError as e:
            raise BackendUnavailable(f"IMAP login for {address} at {s.imap_host}:{s.imap_port} refused: {_server_words(e)}") from None
        except (IMAPClientError, OSError, ssl.SSLError) as e:
            raise BackendUnavailable(f"IMAP server {s.imap_host}:{s.imap_port} unavailable: {e}") from None
        return client

    # --- MailBackend ------------------------------------------------------------------------

    def unroutable(self, recipients: list[str]) -> str | None:
        return None  # the submission server routes everything; it refuses what it cannot

    def deliver(self, mail: OutboundMail) -> DeliveryResult:
        result = relay(self.settings, mail)
        if result.delivered:
            self._append_sent(mail)
        return result

    def _append_sent(self, mail: OutboundMail) -> None:
        address = mail.envelope_from
        try:
            for _ in range(3):
                conn = self._sent_conn(address)
                with conn.lock:
                    if conn.evicted:
                        continue  # closed between the lookup and the lock: look it up again
                    fresh = conn.client is None or time.monotonic() - conn.used > SENT_IDLE_S or conn.uses >= SENT_MAX_USES
                    if fresh:
                        conn.close()
                        conn.client = self._login(address)
                    try:
                        self._append_to_sent(conn, mail)
                        conn.used = time.monotonic()
                        return
                    except (IMAPClientError, OSError, ssl.SSLError):
                        conn.close()
                        if fresh:
                            raise  # a new connection failed: that is the server's answer
                        # a reused one went bad (server timeout or restart): once more, fresh
            raise BackendUnavailable("no IMAP connection for the Sent copy")
        except (BackendUnavailable, IMAPClientError, OSError, ssl.SSLError) as e:
            # The message went out; a missing copy in Sent is worth a log line, not a failure.
            log.warning("could not append %s to Sent of %s: %s", mail.message_id, address, e)

    @staticmethod
    def _append_to_sent(conn: _SentConn, mail: OutboundMail) -> None:
        c = conn.client
        assert c is not None
        if conn.folder is None:
            folder = c.find_special_folder(SENT) or "Sent"
            if not c.folder_exists(folder):
                c.create_folder(folder)
            # Kept selected (read-only): Dovecot then appends into the open mailbox instead of
            # opening and syncing it for each APPEND, which grows with the folder (Maildir).
            c.select_folder(folder, readonly=True)
            conn.folder = folder
        if mail.attempt > 1 and mail.message_id:
            # A retry for recipients deferred on an earlier attempt: that attempt may have put the
            # copy in Sent already. (Only then: the search reads every header in the folder.)
            if c.search(["HEADER", "Message-ID", mail.message_id]):
                return
        c.append(conn.folder, mail.raw, flags=(SEEN,))
        conn.uses += 1

    def _sent_conn(self, address: str) -> _SentConn:
        """The cached Sent connection of an address (now the most recently used), closing those
        beyond SENT_CONNS or idle past SENT_IDLE_S that nobody is using at this moment."""
        now = time.monotonic()
        evicted = []
        with self._sent_lock:
            conn = self._sent.pop(address, None) or _SentConn()
            self._sent[address] = conn
            for other, x in list(self._sent.items()):
                if x is not conn and (len(self._sent) > SENT_CONNS or now - x.used > SENT_IDLE_S) and x.lock.acquire(blocking=False):
                    del self._sent[other]
                    x.evicted = True
                    evicted.append(x)
        for x in evicted:
            x.close()
            x.lock.release()
        return conn

    def confirm_delivered(self, mail: OutboundMail, first_attempt: bool = True) -> list[str]:
        """After a crash between hand-over and recording it: the recipients that provably have
        the message already, so the retry skips them.

        - A recipient in our own domain has its mailbox on this IMAP server: look there for the
          Message-ID (any folder but Sent and Drafts: it may be filed or in Junk already).
        - For the others, a copy in the sender's Sent folder (appended right after the
          submission server's 250) is the evidence — but only when the interrupted attempt was
          the first: after an earlier partial delivery that copy is there anyway and proves
          nothing about the recipients still pending, which are then sent again (at least once
          rather than not at all)."""
        if not mail.message_id:
            return []
        local = [r for r in mail.recipients if r.rpartition("@")[2].lower() == self.settings.domain]
        done = [r for r in local if self._holds(r, mail.message_id, sent=False)]
        others = [r for r in mail.recipients if r not in local]
        if others and first_attempt and self._holds(mail.envelope_from, mail.message_id, sent=True):
            done += others
        return done

    def _holds(self, address: str, message_id: str, sent: bool) -> bool:
        """Whether ``address``'s mailbox holds a message with this Message-ID: in its Sent folder
        (sent=True), or in any other folder but Drafts."""
        try:
            with self.imap(address) as c:
                sent_folder = c.find_special_folder(SENT) or "Sent"
                if sent:
                    folders = [sent_folder] if c.folder_exists(sent_folder) else []
                else:
                    folders = [
                        name for flags, _delim, name in c.list_folders()
                        if name != sent_folder and b"\\Noselect" not in flags and b"\\Drafts" not in flags
                    ]
                for folder in folders:
                    c.select_folder(folder, readonly=True)
                    if c.search(["HEADER", "Message-ID", message_id]):
                        return True
        except (BackendUnavailable, IMAPClientError, OSError) as e:
            log.warning("could not look for %s in the mailbox of %s: %s", message_id, address, e)
        return False

    def start(self, sink: InboundSink) -> None:
        self._sink = sink
        for inbox_id, address in (self._inbox_addresses() if self._inbox_addresses else []):
            self.watch(inbox_id, address)

    def watch(self, inbox_id: str, address: str) -> None:
        """Start syncing one inbox (at start-up, and when an inbox is provisioned)."""
        if self._sink is None or self._stopping.is_set() or not self._sync:
            return
        with self._lock:
            if inbox_id in self._workers:
                return
            w = _SyncWorker(self, inbox_id, address)
            self._workers[inbox_id] = w
        w.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.stop()
        with self._sent_lock:
            sent, self._sent = list(self._sent.values()), {}
        for x in sent:
            with x.lock:
                x.evicted = True
                x.close(logout=True)

    def sync_now(self, inbox_id: str) -> int:
        """Sync one inbox in the calling thread (the CLI, tests, benchmarks)."""
        with self._lock:
            w = self._workers.get(inbox_id)
        if w is None:
            raise BackendUnavailable(f"inbox {inbox_id} is not watched")
        return w.sync_once()

    def provision(self, address: str) -> None:
        s = self.settings
        if s.dovecot_users_file:
            # A random password nobody knows: access goes through the master user.
            _append_line(s.dovecot_users_file, address, f"{address}:{{PLAIN}}{secrets.token_urlsafe(24)}::::::")
        if s.postfix_recipients_file:
            _append_line(s.postfix_recipients_file, address, f"{address} OK")
            # Postfix declines to load a table modified within the last second (it might be
            # half-written) and stalls; the edit is complete, so say so.
            past = time.time() - 2
            os.utime(s.postfix_recipients_file, (past, past))
        if s.provision_command:
            proc = subprocess.run(shlex.split(s.provision_command), capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise BackendUnavailable(f"provisioning command failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
        if s.dovecot_users_file:
            # Dovecot looks at a passwd-file at most once per wall-clock second: until the next
            # second begins, the new user does not exist for it, and LMTP would refuse its mail.
            time.sleep(1.05 - time.time() % 1)

    def labels_changed(self, inbox_id: str, message_pk: int, added: list[str], removed: list[str]) -> None:
        if self._sink is None:
            return
        where = self._sink.imap_location(message_pk)  # type: ignore[attr-defined]
        if where is None:
            return
        address, mailbox, uidvalidity, uid = where
        add = [k for k in (label_to_keyword(x) for x in added) if k]
        rem = [k for k in (label_to_keyword(x) for x in removed) if k]
        if "unread" in added:
            rem.append("\\Seen")
        if "unread" in removed:
            add.append("\\Seen")
        if not add and not rem:
            return
        with self.imap(address) as c:
            status = c.select_folder(mailbox)
            if int(status[b"UIDVALIDITY"]) != uidvalidity:
                return  # the server renumbered the mailbox; the next sync reconciles
            if add:
                c.add_flags([uid], add, silent=True)
            if rem:
                c.remove_flags([uid], rem, silent=True)


class _SentConn:
    """One cached IMAP connection for the Sent copies of one address; used under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: imapclient.IMAPClient | None = None
        self.folder: str | None = None
        self.used = 0.0
        self.uses = 0
        self.evicted = False

    def close(self, logout: bool = False) -> None:
        client, self.client, self.folder, self.uses = self.client, None, None, 0
        if client is None:
            return
        try:  # no LOGOUT on a connection that may be half-dead: it could wait out the timeout
            client.logout() if logout else client.shutdown()
        except Exception:  # already gone
            pass


def _append_line(path: Path, address: str, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        if any(existing.split(":")[0].split()[0] == address for existing in f.read().splitlines() if existing.strip()):
            return
        f.write(line + "\n")


class _SyncWorker:
    """Keeps one inbox in step with its IMAP INBOX."""

    def __init__(self, backend: SmtpImapBackend, inbox_id: str, address: str) -> None:
        self.backend = backend
        self.inbox_id = inbox_id
        self.address = address
        self._stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"imap-{address}", daemon=True)
        self._client: imapclient.IMAPClient | None = None
        self._uidnext = 0  # UIDNEXT when the last sync selected the mailbox
        # (UIDVALIDITY, HIGHESTMODSEQ) at the start of the last complete flag pass (CONDSTORE,
        # RFC 7162): later passes look only at messages whose MODSEQ moved past it.
        self._flags_at: tuple[int, int] | None = None
        self._condstore_on: imapclient.IMAPClient | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        client = self._client
        if client is not None:
            try:  # wake a blocking IDLE so the thread can exit
                client.socket().shutdown(socket.SHUT_RDWR)
            except Exception:  # already closed
                pass
        self._thread.join(timeout=10)

    def sync_once(self) -> int:
        with self._sync_lock, self.backend.imap(self.address) as c:
            return self._sync(c)

    def _sync(self, c: imapclient.IMAPClient) -> int:
        sink = self.backend._sink
        assert sink is not None
        if self._condstore_on is not c:
            caps = c.capabilities()
            if b"CONDSTORE" in caps and b"ENABLE" in caps:
                c.enable("CONDSTORE")  # SELECT then reports HIGHESTMODSEQ
            self._condstore_on = c
        status = c.select_folder(INBOX)
        uidvalidity = int(status[b"UIDVALIDITY"])
        modseq = int(status[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in status else None
        self._uidnext = int(status.get(b"UIDNEXT", 0))
        last_uid = sink.imap_last_uid(self.inbox_id, INBOX, uidvalidity)  # type: ignore[attr-defined]
        uids = sorted(u for u in c.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        n = 0
        for i in range(0, len(uids), FETCH_BATCH):
            batch = uids[i : i + FETCH_BATCH]
            data = c.fetch(batch, ["BODY.PEEK[]", "FLAGS"])
            for uid in batch:  # ascending: last_uid only ever moves past stored messages
                item = data.get(uid)
                if not item or b"BODY[]" not in item:
                    continue
                flags = [_s(f) for f in item.get(b"FLAGS", ())]
                sink.store_synced(self.inbox_id, INBOX, uidvalidity, uid, item[b"BODY[]"], flags)
                n += 1
        self._sync_flags(c, uidvalidity, modseq)
        return n

    def _sync_flags(self, c: imapclient.IMAPClient, uidvalidity: int, modseq: int | None = None) -> None:
        """Flags changed by other IMAP clients (a person reading in Thunderbird) reach the store.

        With CONDSTORE only the messages whose MODSEQ passed the last pass's HIGHESTMODSEQ are
        fetched (none at all while HIGHESTMODSEQ stands still); without it, and on the first
        pass, the flags of every known UID, in batches."""
        sink = self.backend._sink
        since = self._flags_at if modseq is not None and self._flags_at and self._flags_at[0] == uidvalidity else None
        if since is not None and since[1] == modseq:
            return  # nothing in the mailbox changed since the last pass
        known = sink.imap_known_uids(self.inbox_id, INBOX, uidvalidity)  # type: ignore[union-attr,attr-defined]
        if since is not None:
            candidates = sorted(u for u in c.search(["MODSEQ", str(since[1] + 1)]) if u in known)
        else:
            candidates = sorted(known)
        changes = {}
        for i in range(0, len(candidates), FLAGS_BATCH):
            for uid, item in c.fetch(candidates[i : i + FLAGS_BATCH], ["FLAGS"]).items():
                flags = sorted(_s(f) for f in item.get(b"FLAGS", ()))
                if uid in known and " ".join(flags) != known[uid]:
                    changes[uid] = flags
        if changes:
            sink.imap_apply_flags(self.inbox_id, INBOX, uidvalidity, changes)  # type: ignore[union-attr,attr-defined]
        if modseq is not None:
            self._flags_at = (uidvalidity, modseq)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with self.backend.imap(self.address) as c:
                    self._client = c
                    backoff = 1.0
                    idle = b"IDLE" in c.capabilities()
                    while not self._stop.is_set():
                        with self._sync_lock:
                            self._sync(c)
                        if self._arrived_meanwhile(c):
                            continue
                        if idle:
                            self._idle(c)
                        else:
                            self._stop.wait(self.backend.settings.imap_poll_s)
            except Exception as e:  # any failure: log with the server's words, back off, reconnect
                if self._stop.is_set():
                    break
                log.warning("IMAP sync of %s failed: %s; retrying in %.0f s", self.address, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            finally:
                self._client = None

    def _arrived_meanwhile(self, c: imapclient.IMAPClient) -> bool:
        """Mail delivered while a sync ran is announced (EXISTS) in the responses to that sync's
        own commands, not to the IDLE that follows: look once more before waiting. Mail arriving
        after this SELECT is announced when IDLE starts."""
        return int(c.select_folder(INBOX).get(b"UIDNEXT", 0)) > self._uidnext

    def _idle(self, c: imapclient.IMAPClient) -> None:
        c.idle()
        closed: str | None = None
        try:
            deadline = time.monotonic() + IDLE_RENEW_S
            while not self._stop.is_set() and time.monotonic() < deadline:
                t0 = time.monotonic()
                responses = c.idle_check(timeout=5)
                bye = [r for r in responses if r and r[0] == b"BYE"]
                if bye or (not responses and time.monotonic() - t0 < 4):
                    # idle_check swallows EOF and returns [] at once, over and over: without
                    # this the worker would spin on a dead connection until the IDLE renewal.
                    closed = " ".join(_s(x) for x in bye[0][1:]) if bye else "connection closed"
                    break
                if any(len(r) >= 2 and r[1] in (b"EXISTS", b"FETCH", b"EXPUNGE") for r in responses):
                    break
        finally:
            if closed is None and not self._stop.is_set():
                c.idle_done()
        if closed is not None:
            s = self.backend.settings
            raise BackendUnavailable(f"IMAP server {s.imap_host}:{s.imap_port} ended the session of {self.address}: {closed}")
