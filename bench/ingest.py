"""Inbound throughput: messages/s through the real delivery path, through the real SMTP listener,
and through a plain-sqlite3 baseline that writes the same rows with the same durability.

Usage: .venv/bin/python bench/ingest.py [--n 2000] [--smtp-n 500] [--profile]

(a) service  — ``svc.receive(raw, [rcpt], sender)``: parse + store raw + thread + labels + FTS,
               one write transaction per message (what the SMTP listener calls).
(b) smtp     — the same messages sent with smtplib over one connection to the embedded aiosmtpd
               listener on 127.0.0.1 (MAIL/RCPT checks + DATA + receive).
(c) raw      — plain sqlite3, WAL + synchronous=NORMAL, one transaction per message: the raw
               bytes as a blob row, one message row (subject/from/to/date/text), one FTS5 row.
               No parsing (fields come straight from the generator).
Also printed: parse-only cost (``parse_message``) so the service figure can be split into
parsing vs storing.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import shutil
import smtplib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RCPT, Generated, MailGenerator, settings_for, table  # noqa: E402

from inbox_mcp.mail.parse import parse_message  # noqa: E402
from inbox_mcp.service import build_service  # noqa: E402


def bench_service(msgs: list[Generated], home: Path, profile: bool) -> tuple[float, str | None]:
    svc = build_service(settings_for(home), listen=False)
    try:
        agent, _ = svc.create_agent("a")
        svc.provision_inbox(agent, "bob")
        prof = cProfile.Profile() if profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        for g in msgs:
            svc.receive(g.raw, [RCPT], g.sender)
        if prof:
            prof.disable()
        elapsed = time.perf_counter() - t
        inbox_id = svc.list_inboxes(agent).inboxes[0].inbox_id
        n_threads = len(svc.list_threads(agent, inbox_id, limit=100).threads)
        assert n_threads > 0
        report = None
        if prof:
            out = io.StringIO()
            st = pstats.Stats(prof, stream=out).sort_stats("cumulative")
            st.print_stats(30)
            out.write("\n--- by own time ---\n")
            st.sort_stats("tottime").print_stats(20)
            report = out.getvalue()
        return len(msgs) / elapsed, report
    finally:
        svc.backend.stop()
        svc.db.dispose()


def bench_smtp(msgs: list[Generated], home: Path) -> float:
    settings = settings_for(home)
    svc = build_service(settings, listen=True)
    try:
        agent, _ = svc.create_agent("a")
        svc.provision_inbox(agent, "bob")
        host, port = settings.smtp_listen_addr
        assert svc.backend.listener is not None and svc.backend.listener.owner, "listener did not start"
        with smtplib.SMTP(host, port, timeout=60) as smtp:
            smtp.ehlo()
            t = time.perf_counter()
            for g in msgs:
                smtp.sendmail(g.sender, [RCPT], g.raw)
            elapsed = time.perf_counter() - t
        inbox_id = svc.list_inboxes(agent).inboxes[0].inbox_id
        assert svc.search(agent, "subject:" + msgs[-1].subject.split()[-1].strip("#"), inbox_id).messages
        return len(msgs) / elapsed
    finally:
        svc.backend.stop()
        svc.db.dispose()


RAW_SCHEMA = """
CREATE TABLE blob (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE message (
    pk INTEGER PRIMARY KEY, inbox_id TEXT NOT NULL, subject TEXT, from_addr TEXT, from_name TEXT,
    to_addrs TEXT, date TEXT, received_at TEXT, text TEXT, raw_sha256 TEXT NOT NULL REFERENCES blob(sha256)
);
CREATE INDEX ix_message_inbox_pk ON message(inbox_id, pk);
CREATE VIRTUAL TABLE message_fts USING fts5(subject, body, addresses, filenames, tokenize='unicode61 remove_diacritics 2');
"""


def bench_raw(msgs: list[Generated], path: Path) -> float:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.executescript(RAW_SCHEMA)
    t = time.perf_counter()
    for g in msgs:
        digest = hashlib.sha256(g.raw).hexdigest()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT OR IGNORE INTO blob(sha256, size, data) VALUES (?,?,?)", (digest, len(g.raw), g.raw))
        cur = con.execute(
            "INSERT INTO message(inbox_id, subject, from_addr, from_name, to_addrs, date, received_at, text, raw_sha256)"
            " VALUES (?,?,?,?,?,?,datetime('now'),?,?)",
            ("inb_1", g.subject, g.sender, g.from_name, json.dumps([g.to]), g.date.isoformat(), g.text, digest),
        )
        con.execute(
            "INSERT INTO message_fts(rowid, subject, body, addresses, filenames) VALUES (?,?,?,?,?)",
            (cur.lastrowid, g.subject, g.text, f"{g.sender} {g.from_name} {g.to}", ""),
        )
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t
    con.close()
    return len(msgs) / elapsed


def bench_parse(msgs: list[Generated]) -> float:
    t = time.perf_counter()
    for g in msgs:
        parse_message(g.raw)
    return len(msgs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="messages for the service and raw runs")
    ap.add_argument("--smtp-n", type=int, default=500, help="messages sent over SMTP")
    ap.add_argument("--profile", action="store_true", help="cProfile the service run and print the top entries")
    args = ap.parse_args()
    t_all = time.perf_counter()

    t = time.perf_counter()
    msgs = MailGenerator(seed=1).take(args.n)
    gen_s = time.perf_counter() - t
    sizes = sorted(len(g.raw) for g in msgs)
    print(
        f"generated {len(msgs)} messages in {gen_s:.1f} s: raw size p50 {sizes[len(sizes) // 2]} B, "
        f"max {sizes[-1]} B; {sum(g.is_reply for g in msgs)} replies, "
        f"{sum(g.has_attachment for g in msgs)} with attachments"
    )

    tmp = Path(tempfile.mkdtemp(prefix="inbox-bench-ingest-"))
    try:
        parse_rate = bench_parse(msgs)
        raw_rate = bench_raw(msgs, tmp / "raw.db")
        svc_rate, report = bench_service(msgs, tmp / "svc", args.profile)
        smtp_rate = bench_smtp(msgs[: args.smtp_n], tmp / "smtp")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        table(
            ["path", "messages", "msg/s", "ms/msg", "vs raw"],
            [
                ["raw sqlite3 baseline", len(msgs), raw_rate, 1000 / raw_rate, 1.0],
                ["svc.receive", len(msgs), svc_rate, 1000 / svc_rate, svc_rate / raw_rate],
                ["SMTP listener (1 conn)", min(args.smtp_n, len(msgs)), smtp_rate, 1000 / smtp_rate, smtp_rate / raw_rate],
                ["parse_message only", len(msgs), parse_rate, 1000 / parse_rate, parse_rate / raw_rate],
            ],
        )
    )
    store_ms = 1000 / svc_rate - 1000 / parse_rate
    print()
    print(f"service/raw ratio: {svc_rate / raw_rate:.1%}  (target >= 25%)")
    print(f"smtp/raw ratio:    {smtp_rate / raw_rate:.1%}")
    print(
        f"svc.receive split: parse {1000 / parse_rate:.2f} ms + store/thread/index {store_ms:.2f} ms per message "
        f"(store alone would be {1000 / store_ms if store_ms > 0 else float('inf'):,.0f} msg/s)"
    )
    print(f"total run time {time.perf_counter() - t_all:.1f} s")
    if report:
        print("\n=== cProfile of svc.receive loop ===")
        print(report)


if __name__ == "__main__":
    main()
