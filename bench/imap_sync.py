"""Inbound sync throughput of the smtp_imap backend against real Dovecot, compared with a bare
imapclient loop that fetches the same messages over the same kind of connection.

Usage: .venv/bin/python bench/imap_sync.py [--n 10000] [--seen 0.3] [--profile]

Needs root and Postfix + Dovecot (``scripts/install-mailservers.sh``): it starts them with
``tests/mailservers.py`` on free 127.0.0.1 ports in a temp dir, adds one user bob@mail.test and
puts ``--n`` MailGenerator messages into bob's INBOX with IMAP MULTIAPPEND over one connection
logged in as the master user (``bob@mail.test*master``). ``--seen`` of them carry ``\\Seen``
and ~5 % a keyword, so the sync has flags to map.

(a) bare     — one imapclient connection: SELECT INBOX, SEARCH ALL, UID FETCH BODY.PEEK[] + FLAGS
               in batches of 200 (the backend's FETCH_BATCH). Bytes only: nothing parsed or
               stored. Run twice; the second (warm Dovecot index and page cache) is the baseline.
(b) backend  — a Service with backend="smtp_imap" (listen=False, auth_dns="off"), an agent with an
               inbox for bob (provisioning skips the existing passwd-file line), and a
               ``_SyncWorker`` built by hand whose ``sync_once()`` runs in this thread (no IDLE
               thread). First call: the full initial sync of N messages (parse + DKIM/DMARC verdict
               + one write transaction each) plus the flag pass over N known UIDs.
(c) steady   — ``sync_once()`` again with nothing new: new-UID SEARCH + the flag reconciliation
               (all N known UIDs read from the store, one UID FETCH FLAGS over all of them). Then
               once more after another IMAP client set ``\\Seen`` on 1 % of the messages.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, MailGenerator, free_port, table

sys.path.insert(1, str(REPO))

import imapclient
from imapclient.imapclient import join_message_ids

from inbox_mcp.backends import smtp_imap
from inbox_mcp.mail.parse import parse_message
from inbox_mcp.service import build_service
from inbox_mcp.settings import Settings
from tests.mailservers import MailServers, missing_requirements

DOMAIN = "mail.test"
BOB = f"bob@{DOMAIN}"
APPEND_CHUNK = 250
DOVECOT_MAX_LINE = 65536  # Dovecot's imap_max_line_length default (64 KiB)


def connect(ms: MailServers, address: str = BOB) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=ms.imap_port, ssl=False, timeout=120)
    c.login(f"{address}*{ms.master_user}", ms.master_password)
    return c


def fill(ms: MailServers, n: int, seen: float, seed: int) -> tuple[float, float, int]:
    """N generated messages into bob's INBOX; returns (generation s, append s, total bytes)."""
    gen = MailGenerator(seed=seed, rcpt=BOB)
    rng = random.Random(seed + 1)
    total = 0
    gen_s = 0.0
    t = time.perf_counter()
    with connect(ms) as c:
        chunk: list[dict] = []
        for i in range(n):
            tg = time.perf_counter()
            g = gen.next()
            gen_s += time.perf_counter() - tg
            flags: list[str] = []
            if rng.random() < seen:
                flags.append("\\Seen")
            if rng.random() < 0.05:
                flags.append("Projects")
            chunk.append({"msg": g.raw, "flags": flags, "date": g.date})
            total += len(g.raw)
            if len(chunk) == APPEND_CHUNK or i == n - 1:
                c.multiappend("INBOX", chunk)
                chunk = []
        count = c.select_folder("INBOX", readonly=True)[b"EXISTS"]
    assert count == n, f"INBOX holds {count} messages, expected {n}"
    return gen_s, time.perf_counter() - t - gen_s, total


def bare_fetch(ms: MailServers, batch: int) -> tuple[float, int, int]:
    """(seconds, messages, bytes) for SELECT + SEARCH ALL + batched UID FETCH of everything."""
    t = time.perf_counter()
    got = size = 0
    with connect(ms) as c:
        c.select_folder("INBOX")
        uids = sorted(c.search(["ALL"]))
        for i in range(0, len(uids), batch):
            data = c.fetch(uids[i : i + batch], ["BODY.PEEK[]", "FLAGS"])
            for item in data.values():
                size += len(item[b"BODY[]"])
                got += 1
    return time.perf_counter() - t, got, size


class Timed:
    """Wraps one method of an object, adding up the time spent in it."""

    def __init__(self, obj: object, name: str) -> None:
        self.obj, self.name = obj, name
        self.fn = getattr(obj, name)
        self.seconds = 0.0
        self.calls = 0
        self.each: list[float] = []
        setattr(obj, name, self)

    def __call__(self, *a, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            d = time.perf_counter() - t
            self.seconds += d
            self.calls += 1
            self.each.append(d)

    def reset(self) -> None:
        self.seconds, self.calls, self.each = 0.0, 0, []

    def restore(self) -> None:
        delattr(self.obj, self.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="messages in bob's INBOX")
    ap.add_argument("--seen", type=float, default=0.3, help="fraction appended with \\Seen")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile the first sync_once() and print the top 15")
    args = ap.parse_args()
    why = missing_requirements()
    if why:
        sys.exit(f"cannot run: {why}")
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="inbox-bench-imap-"))
    ms = MailServers(tmp / "servers", DOMAIN, tls=False)
    svc = None
    try:
        ms.start()
        ms.add_user(BOB, "bob-pw")
        print(f"inbox_mcp from {Path(smtp_imap.__file__).parents[1]}")
        print(f"mail servers up in {ms.start_seconds:.2f} s (imap {ms.imap_port})")

        gen_s, fill_s, fill_bytes = fill(ms, args.n, args.seen, args.seed)
        print(f"generated {args.n} messages ({fill_bytes / 1e6:.1f} MB) in {gen_s:.1f} s; appended them in "
              f"{fill_s:.1f} s = {args.n / fill_s:,.0f} msg/s (MULTIAPPEND x{APPEND_CHUNK}, one connection)")

        cold_s, cold_n, _ = bare_fetch(ms, smtp_imap.FETCH_BATCH)
        bare_s, bare_n, _ = bare_fetch(ms, smtp_imap.FETCH_BATCH)
        assert cold_n == bare_n == args.n, (cold_n, bare_n)

        # Parse-only cost on the same bytes (the first 1000), to split the backend figure.
        with connect(ms) as c:
            c.select_folder("INBOX", readonly=True)
            sample_uids = sorted(c.search(["ALL"]))[:1000]
            sample = [v[b"BODY[]"] for v in c.fetch(sample_uids, ["BODY.PEEK[]"]).values()]
        t = time.perf_counter()
        for raw in sample:
            parse_message(raw)
        parse_ms = (time.perf_counter() - t) * 1000 / len(sample)

        settings = Settings(
            home=tmp / "home", domain=DOMAIN, backend="smtp_imap", smtp_listen=f"127.0.0.1:{free_port()}",
            smtp_host="127.0.0.1", smtp_port=ms.submission_port, smtp_tls="none",
            imap_host="127.0.0.1", imap_port=ms.imap_port, imap_tls="none",
            imap_username=ms.master_user, imap_password=ms.master_password,
            dovecot_users_file=ms.users_file, postfix_recipients_file=ms.postfix_recipients_file,
            auth_dns="off",
        )
        svc = build_service(settings, listen=False)
        agent, _ = svc.create_agent("bob")
        sink, svc.backend._sink = svc.backend._sink, None  # no watch(): no background sync thread
        inbox = svc.provision_inbox(agent, "bob")
        svc.backend._sink = sink
        assert inbox.address == BOB and not svc.backend._workers
        users_lines = [x for x in ms.users_file.read_text().splitlines() if x.startswith(BOB + ":")]
        assert len(users_lines) == 1, "provisioning must not add a second passwd-file line for bob"

        worker = smtp_imap._SyncWorker(svc.backend, inbox.inbox_id, BOB)
        store = Timed(svc, "store_synced")
        known = Timed(svc, "imap_known_uids")
        flags_t = Timed(worker, "_sync_flags")

        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        stored = worker.sync_once()
        if prof:
            prof.disable()
        first_s = time.perf_counter() - t
        assert stored == args.n, f"first sync stored {stored} of {args.n}"
        first = (store.seconds, store.calls, flags_t.seconds, known.seconds)
        k = max(1, min(1000, len(store.each) // 5))
        early, late = store.each[:k], store.each[-k:]
        growth = (sum(late) / len(late)) / (sum(early) / len(early))

        for x in (store, known, flags_t):
            x.reset()
        steady = []
        for _ in range(3):
            t = time.perf_counter()
            assert worker.sync_once() == 0
            steady.append(time.perf_counter() - t)
        steady_s = sum(steady) / 3
        steady_flags_s, steady_known_s = flags_t.seconds / 3, known.seconds / 3

        # Another client (a person in Thunderbird) reads 1 % of the mail.
        with connect(ms) as c:
            c.select_folder("INBOX")
            uids = sorted(c.search(["UNSEEN"]))
            changed = uids[: max(1, args.n // 100)]
            c.add_flags(changed, ["\\Seen"], silent=True)
        t = time.perf_counter()
        worker.sync_once()
        changed_s = time.perf_counter() - t
        unread_left = svc.list_labels(agent, inbox.inbox_id)
        for x in (store, known, flags_t):
            x.restore()

        n = args.n
        bare_rate = bare_n / bare_s
        back_rate = n / first_s
        rows = [
            ["bare imapclient, cold (1st pass)", n, cold_n / cold_s, cold_s * 1000 / n, (cold_n / cold_s) / bare_rate],
            ["bare imapclient, warm (baseline)", n, bare_rate, bare_s * 1000 / n, 1.0],
            ["backend first sync_once()", n, back_rate, first_s * 1000 / n, back_rate / bare_rate],
            [f"parse_message only ({len(sample)} sample)", len(sample), 1000 / parse_ms, parse_ms, (1000 / parse_ms) / bare_rate],
        ]
        print()
        print(table(["path", "messages", "msg/s", "ms/msg", "vs bare"], rows))
        print()
        print(f"backend/bare ratio: {back_rate / bare_rate:.1%}  (target >= 50%)")
        st_s, st_calls, fl_s, kn_s = first
        fetch_s = first_s - st_s - fl_s
        print(f"first sync split ({first_s:.1f} s): IMAP SEARCH+FETCH+flag-mapping {fetch_s:.1f} s, "
              f"store_synced x{st_calls} {st_s:.1f} s ({st_s * 1000 / max(st_calls, 1):.1f} ms each, of which "
              f"parse ~{parse_ms:.1f} ms), final flag pass {fl_s:.2f} s (store read {kn_s:.2f} s)")
        print(f"store_synced per message: first {k} {sum(early) * 1000 / k:.1f} ms, last {k} "
              f"{sum(late) * 1000 / k:.1f} ms (x{growth:.2f} as the store fills)")
        print()
        id_len = len(join_message_ids(list(range(1, n + 1))))
        print(table(
            ["steady-state sync_once()", "known UIDs", "ms", "flag pass ms", "known-UID read ms"],
            [
                ["nothing new (mean of 3)", n, steady_s * 1000, steady_flags_s * 1000, steady_known_s * 1000],
                [f"after \\Seen on {len(changed)} msgs elsewhere", n, changed_s * 1000, float("nan"), float("nan")],
            ],
        ))
        unread = next((x.unread for x in unread_left.labels if x.name == "inbox"), -1)
        print(f"after the flag change: store has {unread} unread, server {len(uids) - len(changed)} unseen"
              + ("" if unread == len(uids) - len(changed) else "  <-- MISMATCH"))
        print(f"one UID FETCH listing all {n} known UIDs (what _sync_flags sends at HEAD): {id_len:,} bytes of UID set "
              f"({id_len / DOVECOT_MAX_LINE:.0%} of Dovecot's 64 KiB imap_max_line_length)")
        print(f"total run time {time.perf_counter() - t_all:.1f} s")
        if prof:
            out = io.StringIO()
            st = pstats.Stats(prof, stream=out)
            st.sort_stats("cumulative").print_stats(15)
            out.write("--- by own time ---\n")
            st.sort_stats("tottime").print_stats(15)
            print("\n=== cProfile of the first sync_once() ===")
            print(out.getvalue())
    finally:
        if svc is not None:
            svc.backend.stop()
            svc.db.dispose()
        ms.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
