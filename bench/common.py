"""Shared pieces of the benchmarks: a deterministic generator of realistic mail, free ports,
percentiles and a small table printer.

Nothing here touches the network except ``free_port`` (which binds 127.0.0.1:0).
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
# INBOX_BENCH_SRC=/other/checkout/src measures another copy of the code (A/B of a patch).
sys.path.insert(0, os.environ.get("INBOX_BENCH_SRC") or str(REPO / "src"))

DOMAIN = "agents.test"
RCPT = f"bob@{DOMAIN}"

# --- words -----------------------------------------------------------------------------------
# COMMON_WORD is in roughly a third of the messages, RARE_WORD in about 1 in 1000, and
# PHRASE in about 1 in 20 — the search benchmark relies on these frequencies.
COMMON_WORD = "meeting"
RARE_WORD = "zanzibarite"
PHRASE = "quarterly report"
FROM_NAME = "alice"  # one of ~40 senders: ~2.5 % of messages
SUBJECT_WORD = "invoice"

_WORDS = (
    "the of and to in is that for it as with was on be by this are at from have or an not "
    "but had which were all we when your can said there use each she do how their if will up "
    "other about out many then them these so some her would make like into him time has look two "
    "more write go see number no way could people my than first water been call who oil its now "
    "find long down day did get come made may part project deadline budget review draft update "
    "customer server deploy release ticket support account payment order shipping delivery "
    "schedule agenda notes question answer feedback design proposal contract signed approval "
    "team weekly monthly status blocker priority issue fix test build staging production "
    "database migration backup restore invoice receipt refund subscription renewal plan tier"
).split()
_FIRST = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil "
    "trent victor walter xavier yvonne zoe liam emma noah ava mia lucas sofia ethan isla oscar "
    "leo nora hugo iris felix clara jonas ruth"
).split()
_DOMAINS = ["example.com", "example.org", "corp.example", "mail.example.net", "shop.example", "news.example.io"]
_SUBJECTS = [
    "Project {w} status", "Your {w} invoice #{n}", "Meeting notes: {w}", "Re {w} deadline",
    "{w} review for Q{q}", "Welcome to {w}", "Shipping update for order {n}", "Weekly {w} digest",
    "Question about {w}", "Action required: {w} approval", "Draft {w} proposal", "{w} release {n}",
]


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def body_text(rng: random.Random, size: int, extra: list[str]) -> str:
    parts: list[str] = []
    total = 0
    while total < size:
        para = " ".join(sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 5)))
        parts.append(para)
        total += len(para) + 2
    for w in extra:  # sprinkle the planted words into random paragraphs
        i = rng.randrange(len(parts))
        parts[i] = parts[i] + " " + w + "."
    return "\n\n".join(parts)


@dataclass
class Generated:
    raw: bytes
    sender: str
    subject: str
    from_name: str
    to: str
    date: datetime
    text: str
    has_attachment: bool
    is_reply: bool


class MailGenerator:
    """Deterministic stream of realistic messages addressed to ``rcpt``.

    ~30 % are replies to an earlier message (In-Reply-To + References), so threads form;
    ~35 % are multipart/alternative (text + HTML); ~10 % carry a small attachment;
    bodies are 0.5-5 KB of text.
    """

    def __init__(self, seed: int = 1, rcpt: str = RCPT) -> None:
        self.rng = random.Random(seed)
        self.rcpt = rcpt
        self.sent: list[tuple[str, str, list[str]]] = []  # (message-id, subject, references)
        self.i = 0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def next(self) -> Generated:
        rng = self.rng
        self.i += 1
        first = rng.choice(_FIRST)
        sender = f"{first}.{rng.choice(_FIRST)}@{rng.choice(_DOMAINS)}"
        name = f"{first.capitalize()} {rng.choice(_FIRST).capitalize()}"
        is_reply = bool(self.sent) and rng.random() < 0.30
        extra: list[str] = []
        if rng.random() < 0.33:
            extra.append(COMMON_WORD)
        if rng.random() < 0.001:
            extra.append(RARE_WORD)
        if rng.random() < 0.05:
            extra.append(PHRASE)
        msgid = make_msgid(idstring=f"b{self.i}", domain=rng.choice(_DOMAINS))
        m = EmailMessage()
        if is_reply:
            parent_id, parent_subject, parent_refs = self.sent[-rng.randint(1, min(len(self.sent), 200))]
            subject = parent_subject if parent_subject.startswith("Re: ") else "Re: " + parent_subject
            refs = (parent_refs + [parent_id])[-10:]
            m["In-Reply-To"] = parent_id
            m["References"] = " ".join(refs)
        else:
            subject = rng.choice(_SUBJECTS).format(w=rng.choice(_WORDS), n=rng.randint(1000, 99999), q=rng.randint(1, 4))
            refs = []
        date = self.t0 + timedelta(minutes=self.i * 3 + rng.randint(0, 2))
        m["From"] = f'"{name}" <{sender}>'
        m["To"] = self.rcpt
        if rng.random() < 0.2:
            m["Cc"] = f"{rng.choice(_FIRST)}@{rng.choice(_DOMAINS)}"
        m["Subject"] = subject
        m["Date"] = format_datetime(date)
        m["Message-ID"] = msgid
        text = body_text(rng, rng.randint(500, 5000), extra)
        m.set_content(text)
        if rng.random() < 0.35:
            html = "<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\n\n")) + "</body></html>"
            m.add_alternative(html, subtype="html")
        has_att = rng.random() < 0.10
        if has_att:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 3000)))
            kind = rng.choice([("application", "pdf", "report.pdf"), ("text", "csv", "data.csv"), ("image", "png", "logo.png")])
            if kind[0] == "text":
                m.add_attachment(data.hex(), subtype=kind[1], filename=f"{self.i}-{kind[2]}")
            else:
                m.add_attachment(data, maintype=kind[0], subtype=kind[1], filename=f"{self.i}-{kind[2]}")
        self.sent.append((msgid, subject, refs))
        if len(self.sent) > 400:
            del self.sent[:200]
        return Generated(
            raw=m.as_bytes(policy=SMTP_POLICY), sender=sender, subject=subject, from_name=name, to=self.rcpt, date=date,
            text=text, has_attachment=has_att, is_reply=is_reply,
        )

    def take(self, n: int) -> list[Generated]:
        return [self.next() for _ in range(n)]

    def stream(self, n: int) -> Iterator[Generated]:
        for _ in range(n):
            yield self.next()


# --- infrastructure --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(home: Path, port: int | None = None):  # type: ignore[no-untyped-def]
    from inbox_mcp.settings import Settings

    return Settings(home=home, domain=DOMAIN, smtp_listen=f"127.0.0.1:{port or free_port()}")


def timed_calls(fn: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    """Latencies in milliseconds of n calls (after a few unmeasured warm-up calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p99": pct(values, 99), "mean": statistics.fmean(values) if values else float("nan")}


def table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)
