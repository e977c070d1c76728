"""Read-path latency at several store sizes: list_threads (first page, unread filter, page 50 via
cursors) and search (common word, rare word, phrase, from:, subject:, has:attachment, label:,
negations), p50/p99 per size and the ratio between the largest and smallest size.

Usage: .venv/bin/python bench/read_paths.py [--sizes 10000,100000] [--calls 200]
                                             [--builder fast|insert|receive] [--rebuild]

Stores are built once and cached in bench/.data/<builder>-<n>/ (a whole data home).

Builders (all produce the same schema, migrated by build_service):
  receive  svc.receive(raw, ...) per message: the real delivery path, one transaction each.
  insert   parse_message + store.messages.insert_message, 1000 messages per `svc.db.write()`
           transaction: the real thread/label/FTS code without the per-message transaction.
  fast     (default) plain sqlite3 executemany of the same rows insert_message writes (blob,
           thread, threadlabel, message, messagelabel, attachment, message_fts), with threads,
           counters, snippets and participants computed the same way. Used because the real
           code paths build ~40-65 messages/s here, i.e. 25-40 min for 100k (measured: see
           README). Check its fidelity with --builder insert --sizes 10000.

Message mix for insert/fast: ~30 % replies (threads), ~10 % with an attachment, labels
`inbox` on all, `unread` on ~30 %, `receipts` on ~5 %. The receive builder cannot choose
labels: every message there is `inbox` + `unread`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    _DOMAINS,
    _FIRST,
    _SUBJECTS,
    _WORDS,
    COMMON_WORD,
    DATA,
    PHRASE,
    RARE_WORD,
    RCPT,
    SUBJECT_WORD,
    MailGenerator,
    body_text,
    pct,
    settings_for,
    table,
    timed_calls,
)

from inbox_mcp.mail.parse import parse_message  # noqa: E402
from inbox_mcp.mail.subjects import normalize_subject  # noqa: E402
from inbox_mcp.service import build_service  # noqa: E402
from inbox_mcp.service.inbound import to_new_message  # noqa: E402
from inbox_mcp.store.ids import new_id  # noqa: E402
from inbox_mcp.store.messages import insert_message, snippet_of  # noqa: E402

BATCH = 1000


def labels_for(rng: random.Random) -> list[str]:
    labels = ["inbox"]
    if rng.random() < 0.30:
        labels.append("unread")
    if rng.random() < 0.05:
        labels.append("receipts")
    return labels


# --- builders --------------------------------------------------------------------------------


def build_receive(svc, agent, inbox_id: str, n: int) -> None:  # type: ignore[no-untyped-def]
    gen = MailGenerator(seed=7)
    for i, g in enumerate(gen.stream(n), 1):
        svc.receive(g.raw, [RCPT], g.sender)
        if i % 5000 == 0:
            print(f"  {i}/{n}", flush=True)


def build_insert(svc, agent, inbox_id: str, n: int) -> None:  # type: ignore[no-untyped-def]
    gen = MailGenerator(seed=7)
    rng = random.Random(11)
    done = 0
    while done < n:
        batch = gen.take(min(BATCH, n - done))
        msgs = [to_new_message(parse_message(g.raw), g.raw, inbox_id, "in", labels_for(rng)) for g in batch]
        with svc.db.write() as s:
            for m in msgs:
                insert_message(s, m)
        done += len(batch)
        if done % 5000 == 0:
            print(f"  {done}/{n}", flush=True)


def _ts(d: datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format (timezone dropped, as it does for utcnow()).
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class _T:
    pk: int
    id: str
    subject: str
    subject_key: str
    message_count: int = 0
    unread_count: int = 0
    last: datetime | None = None
    snippet: str = ""
    participants: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def build_fast(svc, agent, inbox_id: str, n: int, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rows insert_message would write, through plain sqlite3 in big transactions."""
    svc.db.dispose()
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    lrng = random.Random(11)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    threads: list[_T] = []
    recent: list[tuple[str, _T]] = []  # (message-id, thread) of recent messages: reply targets
    pk = 0
    for start in range(0, n, BATCH):
        blobs, msgs, mlabels, atts, fts = [], [], [], [], []
        touched: dict[int, _T] = {}
        for _ in range(min(BATCH, n - start)):
            pk += 1
            first = rng.choice(_FIRST)
            sender = f"{first}.{rng.choice(_FIRST)}@{rng.choice(_DOMAINS)}"
            name = f"{first.capitalize()} {rng.choice(_FIRST).capitalize()}"
            extra = []
            if rng.random() < 0.33:
                extra.append(COMMON_WORD)
            if rng.random() < 0.001:
                extra.append(RARE_WORD)
            if rng.random() < 0.05:
                extra.append(PHRASE)
            text = body_text(rng, rng.randint(500, 5000), extra)
            msgid = f"<b{pk}.{rng.getrandbits(40)}@{rng.choice(_DOMAINS)}>"
            if recent and rng.random() < 0.30:
                parent_id, thread = recent[-rng.randint(1, min(len(recent), 200))]
                subject = thread.subject if thread.subject.startswith("Re: ") else "Re: " + thread.subject
                irt, refs = parent_id, parent_id
            else:
                subject = rng.choice(_SUBJECTS).format(w=rng.choice(_WORDS), n=rng.randint(1000, 99999), q=rng.randint(1, 4))
                irt, refs = None, ""
                thread = _T(pk=len(threads) + 1, id=new_id("thr"), subject=subject, subject_key=normalize_subject(subject))
                threads.append(thread)
            cc = [f"{rng.choice(_FIRST)}@{rng.choice(_DOMAINS)}"] if rng.random() < 0.2 else []
            date = t0 + timedelta(minutes=pk * 3)
            received = t0 + timedelta(seconds=pk)
            raw = (
                f"From: \"{name}\" <{sender}>\r\nTo: {RCPT}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
                f"Date: {date:%a, %d %b %Y %H:%M:%S +0000}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            ).encode()
            sha = hashlib.sha256(raw).hexdigest()
            blobs.append((sha, len(raw), raw))
            has_att = rng.random() < 0.10
            filenames = []
            if has_att:
                data = os.urandom(rng.randint(200, 3000))
                asha = hashlib.sha256(data).hexdigest()
                blobs.append((asha, len(data), data))
                fname = f"{pk}-" + rng.choice(["report.pdf", "data.csv", "logo.png"])
                filenames.append(fname)
                atts.append((new_id("att"), pk, 0, fname, "application/octet-stream", len(data), asha, None, 0))
            snippet = snippet_of(text)
            labels = labels_for(lrng)
            msgs.append((
                pk, new_id("msg"), inbox_id, thread.pk, "in", msgid, irt, refs, subject, sender, name,
                json.dumps([RCPT]), json.dumps(cc), "[]", "[]", _ts(date), _ts(received), text, None, snippet,
                len(raw), sha, 1, 0, int(has_att), "{}", None,
            ))
            mlabels += [(pk, lb) for lb in labels]
            fts.append((pk, subject, text, " ".join([sender, name, RCPT, *cc]), " ".join(filenames)))
            # thread counters, exactly as insert_message/add_labels maintain them
            thread.message_count += 1
            thread.last = received
            thread.snippet = snippet
            people = [sender] + [p for p in thread.participants if p != sender]
            people += [p for p in [RCPT, *cc] if p not in people]
            thread.participants = people[:20]
            for lb in labels:
                thread.labels[lb] = thread.labels.get(lb, 0) + 1
            thread.unread_count += "unread" in labels
            touched[thread.pk] = thread
            recent.append((msgid, thread))
            if len(recent) > 400:
                del recent[:200]
        con.execute("BEGIN")
        con.executemany(
            "INSERT OR REPLACE INTO thread(pk, id, inbox_id, subject, subject_key, message_count, unread_count,"
            " last_message_at, snippet, participants) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(t.pk, t.id, inbox_id, t.subject, t.subject_key, t.message_count, t.unread_count, _ts(t.last),  # type: ignore[arg-type]
              t.snippet, json.dumps(t.participants)) for t in touched.values()],
        )
        con.executemany(
            "INSERT OR REPLACE INTO threadlabel(thread_pk, label, count) VALUES (?,?,?)",
            [(t.pk, lb, c) for t in touched.values() for lb, c in t.labels.items()],
        )
        con.executemany("INSERT OR IGNORE INTO blob(sha256, size, data) VALUES (?,?,?)", blobs)
        con.executemany(
            'INSERT INTO message(pk, id, inbox_id, thread_pk, direction, message_id_header, in_reply_to, "references",'
            " subject, from_addr, from_name, to_addrs, cc_addrs, bcc_addrs, reply_to, date, received_at, text, html,"
            " snippet, size, raw_sha256, parse_ok, auto_submitted, has_attachments, auth_results, status)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            msgs,
        )
        con.executemany("INSERT INTO messagelabel(message_pk, label) VALUES (?,?)", mlabels)
        con.executemany(
            "INSERT INTO attachment(id, message_pk, position, filename, content_type, size, sha256, content_id, inline)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            atts,
        )
        con.executemany("INSERT INTO message_fts(rowid, subject, body, addresses, filenames) VALUES (?,?,?,?,?)", fts)
        con.execute("COMMIT")
        if (start + BATCH) % 10000 == 0:
            print(f"  {start + BATCH}/{n}", flush=True)
    con.execute("ANALYZE") if False else None  # the service never runs ANALYZE; neither do we
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def store_home(builder: str, n: int, rebuild: bool) -> tuple[Path, float | None]:
    home = DATA / f"{builder}-{n}"
    if home.exists() and (home / "ready").exists() and not rebuild:
        return home, None
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    print(f"building {builder}-{n} ...", flush=True)
    t = time.perf_counter()
    svc = build_service(settings_for(home), listen=False)
    agent, _ = svc.create_agent("a")
    inbox_id = svc.provision_inbox(agent, "bob").inbox_id
    if builder == "receive":
        build_receive(svc, agent, inbox_id, n)
    elif builder == "insert":
        build_insert(svc, agent, inbox_id, n)
    else:
        build_fast(svc, agent, inbox_id, n, home / "inbox.db")
    svc.backend.stop()
    svc.db.dispose()
    took = time.perf_counter() - t
    (home / "ready").write_text(json.dumps({"builder": builder, "n": n, "build_s": round(took, 1)}))
    print(f"built {builder}-{n} in {took:.1f} s ({n / took:,.0f} msg/s)", flush=True)
    return home, took


# --- measurements ----------------------------------------------------------------------------

SEARCHES = [
    ("search common word", COMMON_WORD),
    ("search rare word", RARE_WORD),
    ("search phrase", f'"{PHRASE}"'),
    ("search from:", "from:alice"),
    ("search subject:", f"subject:{SUBJECT_WORD}"),
    ("search has:attachment", "has:attachment"),
    ("search label:", "label:receipts"),
    ("search negation (word -word)", f"deadline -{COMMON_WORD}"),
    ("search negation only", f"-{COMMON_WORD}"),
]


def measure(home: Path, calls: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    svc = build_service(settings_for(home), listen=False)
    try:
        agent = svc.agent_by_name("a")
        inbox_id = svc.list_inboxes(agent).inboxes[0].inbox_id
        res: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        first = svc.list_threads(agent, inbox_id, limit=20)
        counts["list_threads first page"] = len(first.threads)
        res["list_threads first page"] = timed_calls(lambda: svc.list_threads(agent, inbox_id, limit=20), calls)
        unread = svc.list_threads(agent, inbox_id, labels=["unread"], limit=20)
        counts["list_threads labels=[unread]"] = len(unread.threads)
        res["list_threads labels=[unread]"] = timed_calls(
            lambda: svc.list_threads(agent, inbox_id, labels=["unread"], limit=20), calls
        )
        cursor = first.next_cursor
        for _ in range(48):  # cursor of page 50
            cursor = svc.list_threads(agent, inbox_id, limit=20, cursor=cursor).next_cursor
        counts["list_threads page 50 (cursor)"] = len(svc.list_threads(agent, inbox_id, limit=20, cursor=cursor).threads)
        res["list_threads page 50 (cursor)"] = timed_calls(
            lambda: svc.list_threads(agent, inbox_id, limit=20, cursor=cursor), calls
        )
        for name, q in SEARCHES:
            counts[name] = len(svc.search(agent, q, inbox_id).messages)
            res[name] = timed_calls(lambda q=q: svc.search(agent, q, inbox_id), calls)
        return res, counts
    finally:
        svc.backend.stop()
        svc.db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--builder", choices=["fast", "insert", "receive"], default="fast")
    ap.add_argument("--rebuild", action="store_true", help="ignore the cached store in bench/.data/")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    t_all = time.perf_counter()
    results: dict[int, dict[str, list[float]]] = {}
    counts: dict[int, dict[str, int]] = {}
    for n in sizes:
        home, took = store_home(args.builder, n, args.rebuild)
        meta = json.loads((home / "ready").read_text())
        db_mb = (home / "inbox.db").stat().st_size / 1e6
        print(f"store {home.name}: {db_mb:,.0f} MB, built in {meta['build_s']} s{'' if took else ' (cached)'}", flush=True)
        t = time.perf_counter()
        results[n], counts[n] = measure(home, args.calls)
        print(f"measured {n} in {time.perf_counter() - t:.1f} s", flush=True)

    names = list(results[sizes[0]])
    headers = ["operation (ms)"]
    for n in sizes:
        headers += [f"{n // 1000}k p50", f"{n // 1000}k p99", f"{n // 1000}k rows"]
    lo, hi = sizes[0], sizes[-1]
    if len(sizes) > 1:
        headers += [f"p50 {hi // 1000}k/{lo // 1000}k", f"p99 {hi // 1000}k/{lo // 1000}k"]
    rows = []
    for name in names:
        row: list[object] = [name]
        for n in sizes:
            row += [pct(results[n][name], 50), pct(results[n][name], 99), counts[n][name]]
        if len(sizes) > 1:
            row += [pct(results[hi][name], 50) / pct(results[lo][name], 50), pct(results[hi][name], 99) / pct(results[lo][name], 99)]
        rows.append(row)
    print()
    print(f"builder={args.builder}, {args.calls} calls per operation, latencies in ms, rows = results on the page")
    print(table(headers, rows))
    if len(sizes) > 1:
        r = pct(results[hi]["list_threads first page"], 99) / pct(results[lo]["list_threads first page"], 99)
        print(f"\nlist_threads first page p99 {hi // 1000}k/{lo // 1000}k = {r:.2f} (target: flat, ~1.0)")
    print(f"total run time {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
