"""Real Postfix and Dovecot for tests and benchmarks, run from config files in a temp dir.

``MailServers(root).start()`` writes a Postfix config dir and a Dovecot config under ``root``,
starts both in the foreground as subprocesses (each in its own session), listening only on
127.0.0.1 at free ports, and returns once every listener accepts connections. ``stop()`` (or
leaving the ``with`` block, or the end of the test process, or even the test process being
killed: a tiny watchdog process notices) ends every process and waits until the ports are closed.

What it runs (needs ``scripts/install-mailservers.sh`` first: Debian's postfix, dovecot-imapd,
dovecot-lmtpd and a system user ``vmail``; the harness must run as root):

* ``smtp_port``: Postfix as an MX for ``domain``: mail to listed users is delivered to Dovecot over
  LMTP; unknown users get ``550 5.1.1``; other domains ``554 5.7.1 Relay access denied``.
* ``submission_port``: Postfix with AUTH PLAIN/LOGIN (SASL through Dovecot's auth socket), no TLS.
  Unauthenticated clients are refused (554 5.7.1). Authenticated mail to ``domain`` is delivered
  locally; to other domains it goes to ``relay_to`` (host, port) if given, else 554 Relay access denied.
* ``imap_port``: Dovecot IMAP, plaintext login allowed (and STARTTLS offered when a cert was made);
  ``imaps_port``: implicit TLS with a self-signed cert (``tls_cert``), or None without openssl.
* Mailboxes: Maildir under ``root/mail/<domain>/<user>/Maildir``, owned by ``vmail``; an inbox
  namespace with separator "/" and special-use Sent, Drafts, Trash, Junk, Archive (auto-subscribed).
  Logging in as ``user@domain*master`` with ``master_password`` opens any mailbox.

Provisioning: ``users_file`` is Dovecot's passwd-file (``user@domain:{PLAIN}password::::::``);
Dovecot re-reads it by itself, no reload needed, when its mtime or size has changed -- but it
stats the file at most once per wall-clock second, so an edit can stay unseen until the next
second begins (logins fail, LMTP says 550 in the meantime; Postfix's lmtp client here has
soft_bounce, so such mail is retried, not bounced). ``postfix_recipients_file`` is Postfix's
``virtual_mailbox_maps`` as ``texthash`` (``user@domain OK``): Postfix reads texthash tables only
when a daemon process starts, so an edit is NOT seen until ``reload_postfix()``, which also moves
the file's mtime back (Postfix stalls up to 2 s on a table younger than ~1 s). ``add_user`` and
``remove_user`` edit both files, reload Postfix and (unless ``wait=False``) sleep out the second.

Timings here: start ~0.15 s, stop ~0.05 s, smtplib -> Postfix -> LMTP -> Dovecot ~20 ms.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

__all__ = ["MailServers", "MailServersUnavailable", "mailservers", "mailservers_module", "missing_requirements"]

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/postfix"
DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/dovecot"
MAIL_USER = "vmail"
SPECIAL_USE = {"Sent": r"\Sent", "Drafts": r"\Drafts", "Trash": r"\Trash", "Junk": r"\Junk", "Archive": r"\Archive"}


class MailServersUnavailable(RuntimeError):
    """Postfix/Dovecot are not installed or this process is not root."""


def missing_requirements() -> str | None:
    """Why MailServers cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "MailServers needs root (Postfix and Dovecot drop privileges to their own users)"
    for path in (POSTFIX, DOVECOT):
        if not os.access(path, os.X_OK):
            return f"{path} not found: run scripts/install-mailservers.sh"
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        return "dovecot-lmtpd not installed: run scripts/install-mailservers.sh"
    for user in (MAIL_USER, "postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} missing: run scripts/install-mailservers.sh"
    return None


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening() -> set[int]:
    """TCP ports in LISTEN state on 127.0.0.1 (or any address), from /proc/net/tcp: unlike a probe
    connection, reading it neither spawns an smtpd nor leaves a line in the logs."""
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            local, _remote, state = line.split()[1:4]
            addr, port = local.split(":")
            if state == "0A" and addr in ("0100007F", "00000000"):
                ports.add(int(port, 16))
    return ports


def _make_traversable(path: Path) -> None:
    """Postfix's and Dovecot's unprivileged processes (postfix, vmail, dovecot) must be able to walk
    down to root. pytest's tmp_path and mkdtemp() dirs are 0700: add only the search bit (o+x,
    no listing) to root and to those of its ancestors that live in the temp dir; refuse elsewhere."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if mode & 0o001:
            continue
        if p == path or (p != tmp and tmp in p.parents):
            os.chmod(p, mode | 0o001)
        else:
            raise MailServersUnavailable(
                f"{p} is not searchable by other users (mode {oct(mode & 0o777)}); Postfix and Dovecot "
                f"run as unprivileged users and must reach {path}: put the root under {tmp}"
            )


_WATCHDOG = r"""
import os, signal, subprocess, sys, time, shutil
postfix, conf, short = sys.argv[1:4]
pgids = [int(x) for x in sys.argv[4:]]
sys.stdin.buffer.read()  # returns at EOF: the test process closed the pipe or died
try:
    subprocess.run([postfix, "-c", conf, "abort"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
except Exception:
    pass
for sig in (signal.SIGTERM, signal.SIGKILL):
    for g in pgids:
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    time.sleep(0.3)
shutil.rmtree(short, ignore_errors=True)
"""


class MailServers:
    """Real Postfix + Dovecot under ``root``; see the module docstring."""

    def __init__(
        self,
        root: Path,
        domain: str = "mail.test",
        *,
        relay_to: tuple[str, int] | None = None,
        tls: bool = True,
        smtp_starttls: bool = False,
        master_user: str = "master",
        master_password: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.domain = domain.lower()
        self.relay_to = relay_to
        self.tls = tls
        self.smtp_starttls = smtp_starttls
        self.master_user = master_user
        self.master_password = master_password or secrets.token_hex(12)
        self.postfix_dir = self.root / "postfix"          # config_directory: main.cf, master.cf
        self.queue_dir = self.root / "postfix-queue"      # queue_directory (root-owned; subdirs by post-install)
        self.data_dir = self.root / "postfix-data"        # data_directory (postfix-owned)
        self.dovecot_dir = self.root / "dovecot"
        self.mail_dir = self.root / "mail"
        self.log_dir = self.root / "log"
        self.users_file = self.dovecot_dir / "users"
        self.master_users_file = self.dovecot_dir / "master-users"
        self.postfix_recipients_file = self.postfix_dir / "recipients"
        self.tls_cert: Path | None = None
        self.tls_key: Path | None = None
        self.smtp_port = self.submission_port = self.imap_port = 0
        self.imaps_port: int | None = None
        self.base_dir: Path | None = None                 # Dovecot base_dir: short, for unix sockets
        self._short: Path | None = None
        self._postfix: subprocess.Popen[bytes] | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._started = False
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self._started:
            return self
        why = missing_requirements()
        if why:
            raise MailServersUnavailable(why)
        t0 = time.monotonic()
        last: Exception | None = None
        for _attempt in range(3):  # a free port can be taken between picking and binding: retry
            try:
                self._prepare_dirs()
                self._choose_ports()
                self._write_configs()
                self._launch()
                break
            except _PortRace as e:
                last = e
                self._kill_all()
            except BaseException:
                self._kill_all()
                raise
        else:
            raise RuntimeError(f"could not start mail servers: {last}\n{self.log_text()}")
        self._started = True
        _live.add(self)
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, graceful: bool = False) -> None:
        """Stop Postfix and Dovecot, wait until their ports are closed. Idempotent.

        Postfix's master gets SIGTERM, as from ``postfix stop``, and ends its own process group.
        Dovecot's own SIGTERM shutdown takes 1-6 s (its master waits for its children), so by
        default its whole process group is SIGKILLed instead: mail already delivered is safe in
        Maildir; ``graceful=True`` sends SIGTERM and waits (up to 10 s)."""
        if self._postfix is None and self._dovecot is None and self._watchdog is None:
            return
        t0 = time.monotonic()
        self._kill_all(graceful)
        self._started = False
        _live.discard(self)
        self.stop_seconds = time.monotonic() - t0

    # -- provisioning ------------------------------------------------------------------------
    def add_user(self, address: str, password: str, wait: bool = True) -> None:
        """Provision a mailbox: a line in users_file (Dovecot) and in postfix_recipients_file
        (Postfix), then reload Postfix. With ``wait`` (default), return only once Dovecot is sure
        to see the change (see ``_after_edit``): up to 1 s later."""
        address = self._check_address(address)
        if any(":" in x or "\n" in x for x in (address, password)):
            raise ValueError("':' and newlines cannot appear in a passwd-file entry")
        with open(self.users_file, "a") as f:
            f.write(f"{address}:{{PLAIN}}{password}::::::\n")
        written = time.time()
        with open(self.postfix_recipients_file, "a") as f:
            f.write(f"{address} OK\n")
        self._after_edit(written, wait)

    def remove_user(self, address: str, wait: bool = True) -> None:
        """Remove the mailbox's lines from both files (its mail stays on disk) and reload Postfix."""
        address = self._check_address(address)
        _rewrite_without(self.users_file, lambda line: line.split(":", 1)[0].lower() == address)
        written = time.time()
        _rewrite_without(self.postfix_recipients_file, lambda line: (line.split() or [""])[0].lower() == address)
        self._after_edit(written, wait)

    def _after_edit(self, written: float, wait: bool) -> None:
        """Dovecot's passwd-file driver stats the file at most once per wall-clock second: an edit
        made in the same second as an earlier lookup stays invisible until the next second begins.
        Reload Postfix meanwhile, then sleep out the rest of that second."""
        if self._started:
            self.reload_postfix()
        if wait:
            rest = int(written) + 1 - time.time()
            if rest > 0:
                time.sleep(rest + 0.02)

    def reload_postfix(self, timeout: float = 3.0) -> None:
        """``postfix -c CONF reload``, then wait until the idle smtpd processes that still hold the old
        tables have exited (a reload only asks them to leave; a connection made in the next few
        milliseconds could otherwise meet an old one)."""
        _backdate(self.postfix_recipients_file)
        master = self._postfix_master_pid()
        old = _children(master, {"smtpd", "trivial-rewrite", "cleanup"}) if master else set()
        _run([POSTFIX, "-c", str(self.postfix_dir), "reload"])
        deadline = time.monotonic() + timeout
        while old and time.monotonic() < deadline:
            old = {p for p in old if _alive(p)}
            time.sleep(0.01)

    # -- debugging ---------------------------------------------------------------------------
    def log_text(self) -> str:
        parts = []
        for name in ("postfix.stderr", "postfix.log", "dovecot.stderr", "dovecot.log"):
            p = self.log_dir / name
            if p.exists():
                parts.append(f"===== {name} =====\n{p.read_text(errors='replace')}")
        return "\n".join(parts)

    def mailbox_path(self, address: str) -> Path:
        local, _, dom = address.lower().partition("@")
        return self.mail_dir / dom / local / "Maildir"

    def __repr__(self) -> str:
        return (f"MailServers(root={self.root}, smtp={self.smtp_port}, submission={self.submission_port}, "
                f"imap={self.imap_port}, imaps={self.imaps_port}, started={self._started})")

    # -- internals ---------------------------------------------------------------------------
    def _check_address(self, address: str) -> str:
        address = address.strip().lower()
        local, at, dom = address.partition("@")
        if not at or not local or dom != self.domain:
            raise ValueError(f"{address!r} is not an address in {self.domain}")
        return address

    def _prepare_dirs(self) -> None:
        vm, pf = pwd.getpwnam(MAIL_USER), pwd.getpwnam("postfix")
        self.root.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.root)
        for d in (self.postfix_dir, self.queue_dir, self.dovecot_dir, self.dovecot_dir / "state", self.log_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o755)
        # What `postfix post-install create-missing` would make (from /etc/postfix/postfix-files); made
        # here so start-up can skip postfix-script's checks (`quick-start`), which take ~3 s.
        postdrop = grp.getgrnam("postdrop").gr_gid
        for d, uid, gid, mode in [
            (self.data_dir, pf.pw_uid, pf.pw_gid, 0o700),
            (self.queue_dir / "pid", 0, 0, 0o755),
            (self.queue_dir / "maildrop", pf.pw_uid, postdrop, 0o730),
            (self.queue_dir / "public", pf.pw_uid, postdrop, 0o710),
            *[(self.queue_dir / q, pf.pw_uid, 0, 0o700) for q in
              ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
               "saved", "trace")],
        ]:
            d.mkdir(exist_ok=True)
            os.chown(d, uid, gid)
            os.chmod(d, mode)
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, vm.pw_uid, vm.pw_gid)
        os.chmod(self.mail_dir, 0o700)
        for f in (self.users_file, self.postfix_recipients_file):
            f.touch(exist_ok=True)
        self.master_users_file.write_text(f"{self.master_user}:{{PLAIN}}{self.master_password}\n")
        os.chmod(self.master_users_file, 0o600)
        if self.tls and self.tls_cert is None and shutil.which("openssl"):
            tdir = self.root / "tls"
            tdir.mkdir(exist_ok=True)
            cert, key = tdir / "cert.pem", tdir / "key.pem"
            r = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", str(key), "-out", str(cert)],
                capture_output=True, timeout=30, check=False,
            )
            if r.returncode == 0:
                self.tls_cert, self.tls_key = cert, key
        if self._short is None:
            # Unix-socket paths are limited to 108 bytes: Dovecot's sockets live under /tmp/msXXXX/run.
            self._short = Path(tempfile.mkdtemp(prefix="ms", dir="/tmp"))
            os.chmod(self._short, 0o755)
            self.base_dir = self._short / "run"

    def _choose_ports(self) -> None:
        ports = _free_ports(4)
        self.smtp_port, self.submission_port, self.imap_port = ports[:3]
        self.imaps_port = ports[3] if self.tls_cert else None

    def _write_configs(self) -> None:
        assert self.base_dir is not None
        vm = pwd.getpwnam(MAIL_USER)
        (self.dovecot_dir / "dovecot.conf").write_text(self._dovecot_conf(vm.pw_uid, vm.pw_gid))
        (self.postfix_dir / "main.cf").write_text(self._main_cf())
        (self.postfix_dir / "master.cf").write_text(self._master_cf())
        for f in ("main.cf", "master.cf", "recipients"):
            _backdate(self.postfix_dir / f)

    def _dovecot_conf(self, uid: int, gid: int) -> str:
        ssl = "no"
        if self.tls_cert and self.tls_key:
            ssl = f"yes\nssl_cert = <{self.tls_cert}\nssl_key = <{self.tls_key}\nssl_min_protocol = TLSv1.2"
        mailboxes = "\n".join(
            f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}"
            for name, flag in SPECIAL_USE.items()
        )
        return f"""\
# Written by tests/mailservers.py: a private Dovecot on 127.0.0.1, for tests.
instance_name = ms-{self.imap_port}
base_dir = {self.base_dir}
state_dir = {self.dovecot_dir}/state
log_path = {self.log_dir}/dovecot.log
info_log_path = {self.log_dir}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = {ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_master_user_separator = *
auth_username_format = %Lu
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 5 secs
shutdown_clients = yes
default_process_limit = 200
default_client_limit = 1000

passdb {{
  driver = passwd-file
  master = yes
  pass = yes
  args = scheme=PLAIN {self.master_users_file}
}}
passdb {{
  # authenticates nobody, only sets "nodelay": a wrong password is then answered at once
  # (else Dovecot holds failures back and flushes them on a 0.5 s timer, even with
  # auth_failure_delay = 0). Its result is NEXT, so the extra field survives a later failure.
  driver = static
  args = noauthenticate nodelay=yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_file}
}}
userdb {{
  driver = passwd-file
  args = {self.users_file}
  default_fields = uid={uid} gid={gid} home={self.mail_dir}/%d/%n
}}

namespace inbox {{
  inbox = yes
  prefix =
  separator = /
{mailboxes}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port or 0}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
service auth {{
  # root, so the passwd-files need no particular owner (inbox-mcp appends to users_file)
  user = root
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  # no per-IP "auth penalty" (2-15 s delays after a failed login, even for the next good one)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
protocol lmtp {{
  postmaster_address = postmaster@{self.domain}
}}
"""

    def _main_cf(self) -> str:
        assert self.base_dir is not None
        if self.relay_to:
            host, port = self.relay_to
            relay = f"default_transport = smtp\nrelayhost = [{host}]:{port}"
        else:
            relay = "default_transport = error:5.7.1 this test server relays nothing\nrelayhost ="
        return f"""\
# Written by tests/mailservers.py: a private Postfix on 127.0.0.1, for tests.
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{self.domain}
mydomain = {self.domain}
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_bind_address = 127.0.0.1
mydestination =
relay_domains =
mynetworks = 127.0.0.1/32
local_recipient_maps =
local_transport = error:5.1.1 no local delivery
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
maillog_file = {self.log_dir}/postfix.log
maillog_file_prefixes = {self.log_dir}
smtpd_banner = $myhostname ESMTP
virtual_mailbox_domains = {self.domain}
virtual_mailbox_maps = texthash:{self.postfix_recipients_file}
virtual_transport = lmtp:unix:{self.base_dir}/lmtp
{relay}
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
smtpd_sasl_auth_enable = no
smtpd_client_restrictions =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
"""

    def _master_cf(self) -> str:
        assert self.base_dir is not None
        relay = "permit_sasl_authenticated,reject_unauth_destination" if self.relay_to else "reject_unauth_destination"
        tls = ""
        if self.smtp_starttls and self.tls_cert and self.tls_key:
            tls = (f"  -o smtpd_tls_security_level=may\n  -o smtpd_tls_cert_file={self.tls_cert}\n"
                   f"  -o smtpd_tls_key_file={self.tls_key}\n")
        return f"""\
# Written by tests/mailservers.py. Every service runs without chroot.
127.0.0.1:{self.smtp_port} inet n - n - - smtpd
  -o syslog_name=postfix/smtp
{tls}127.0.0.1:{self.submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path={self.base_dir}/auth-postfix
  -o smtpd_sasl_security_options=noanonymous
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions={relay}
{tls}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
# soft_bounce: a recipient that Postfix knows but Dovecot does not yet see (users_file edited in
# the same second as an earlier lookup) gets "550 User doesn't exist" from LMTP; keep it queued
# and retry (in ~1 s) instead of bouncing it.
lmtp      unix  -       -       n       -       -       lmtp
  -o soft_bounce=yes
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

    def _launch(self) -> None:
        assert self._short is not None
        for name in ("postfix.stderr", "dovecot.stderr"):
            (self.log_dir / name).write_bytes(b"")
        offsets = {n: _size(self.log_dir / n) for n in ("postfix.log", "dovecot.log")}
        # Leftovers from a previous run in the same root would make both refuse to start.
        (self.queue_dir / "pid" / "master.pid").unlink(missing_ok=True)
        (self.queue_dir / "quick-start").touch()
        with open(self.log_dir / "dovecot.stderr", "ab") as err:
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.dovecot_dir / "dovecot.conf")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
            )
        with open(self.log_dir / "postfix.stderr", "ab") as err:
            self._postfix = subprocess.Popen(
                [POSTFIX, "-c", str(self.postfix_dir), "start-fg"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
            )
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, POSTFIX, str(self.postfix_dir), str(self._short),
             str(self._dovecot.pid), str(self._postfix.pid)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        ports = [self.smtp_port, self.submission_port, self.imap_port] + ([self.imaps_port] if self.imaps_port else [])
        deadline = time.monotonic() + 20
        pending = list(ports)
        while pending:
            for name, proc in (("dovecot", self._dovecot), ("postfix", self._postfix)):
                if proc.poll() is not None:
                    time.sleep(0.1)  # let the last log lines land
                    text = self.log_text()
                    new = "".join(_tail(self.log_dir / n, o) for n, o in offsets.items())
                    new += (self.log_dir / f"{name}.stderr").read_text(errors="replace")
                    if "in use" in new:
                        raise _PortRace(f"{name}: address in use")
                    raise RuntimeError(f"{name} exited with {proc.returncode} during start-up\n{text}")
            listening = _listening()
            pending = [p for p in pending if p not in listening]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"ports {pending} did not open within 20 s\n{self.log_text()}")
            if pending:
                time.sleep(0.01)

    def _postfix_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _kill_all(self, graceful: bool = False) -> None:
        ports = [p for p in (self.smtp_port, self.submission_port, self.imap_port, self.imaps_port) if p]
        if self._postfix is not None:
            if self._postfix.poll() is None:
                # What `postfix stop` does (SIGTERM to the master, which then ends its own process
                # group), minus its wait loop that polls once a second: that costs 1 s whenever the
                # master has not exited by the first poll.
                master = self._postfix_master_pid()
                try:
                    if master is None:
                        raise ProcessLookupError
                    os.kill(master, signal.SIGTERM)
                except ProcessLookupError:
                    _run([POSTFIX, "-c", str(self.postfix_dir), "stop"], check=False, timeout=15)
            _reap(self._postfix, 5)
            self._postfix = None
        if self._dovecot is not None:
            if graceful and self._dovecot.poll() is None:
                self._dovecot.terminate()
                _reap(self._dovecot, 10)
            else:
                _reap(self._dovecot, 0, signal.SIGKILL)
            self._dovecot = None
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            if self._watchdog.stdin:
                self._watchdog.stdin.close()
            self._watchdog = None
        deadline = time.monotonic() + 10
        while set(ports) & _listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {ports} still open 10 s after stop\n{self.log_text()}")
            time.sleep(0.01)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)
            self._short = self.base_dir = None


class _PortRace(RuntimeError):
    pass


def _run(cmd: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def _reap(proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM) -> None:
    """Wait `grace` s for proc to exit, then signal its whole process group (its own session), and kill."""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except OSError:
            pass
        try:
            proc.wait(3)
            break
        except subprocess.TimeoutExpired:
            continue
    # children left in the group (the Popen'd process may already be gone)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _backdate(path: Path) -> None:
    """Postfix will not load main.cf or a texthash table whose mtime is less than ~1 s old (it
    may still be being written): it re-reads it every 0.3 s until the file is old enough, which
    stalls start-up, and every new smtpd after an edit, by up to 2 s. Move the mtime 60 s back."""
    if path.exists():
        past = time.time() - 60
        os.utime(path, (past, past))


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(ppid: int, names: set[str]) -> set[int]:
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid and comm in names:
            out.add(int(d))
    return out


def _rewrite_without(path: Path, drop: object) -> None:
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    keep = [line for line in lines if not drop(line)]  # type: ignore[operator]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


_live: weakref.WeakSet[MailServers] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for ms in list(_live):
        with contextlib.suppress(Exception):
            ms.stop()


@pytest.fixture
def mailservers(tmp_path: Path) -> Iterator[MailServers]:
    """A started MailServers for one test (start + stop well under a second)."""
    why = missing_requirements()
    if why:  # a skipped test proves nothing: the test command installs these
        pytest.fail(f"{why} (run scripts/install-mailservers.sh)")
    ms = MailServers(tmp_path / "mailservers")
    with ms:
        yield ms


@pytest.fixture(scope="module")
def mailservers_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServers]:
    """One started MailServers shared by a test module."""
    why = missing_requirements()
    if why:
        pytest.fail(f"{why} (run scripts/install-mailservers.sh)")
    ms = MailServers(tmp_path_factory.mktemp("mailservers"))
    with ms:
        yield ms
