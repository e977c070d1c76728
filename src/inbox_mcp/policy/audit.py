"""The tamper-evident audit log: append, verify, export.

Each record's hash is SHA-256 over the previous record's hash and a canonical JSON of its own
fields. Appends happen inside the caller's write transaction (``BEGIN IMMEDIATE`` on SQLite,
an advisory lock elsewhere), so two processes can never both chain onto the same record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from ..store.tables import AuditRecord, utcnow

GENESIS = "0" * 64


def _canonical(r: AuditRecord) -> bytes:
    fields = {
        "seq": r.seq, "at": _iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
        "decision": r.decision, "rule": r.rule, "detail": r.detail, "content_digest": r.content_digest,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(at: datetime) -> str:
    # SQLite returns what we stored without the offset: normalise so a round trip hashes the same.
    return at.replace(tzinfo=None).isoformat(timespec="microseconds")


def record_hash(prev_hash: str, r: AuditRecord) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(r)).hexdigest()


def append(
    s: Session, *, actor: str, action: str, target: str = "", decision: str = "", rule: str = "",
    detail: str = "", content_digest: str = "",
) -> AuditRecord:
    last = s.exec(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    prev = last.hash if last else GENESIS
    rec = AuditRecord(
        seq=(last.seq if last else 0) + 1,  # type: ignore[operator]
        at=utcnow(), actor=actor, action=action, target=target, decision=decision, rule=rule,
        detail=detail[:2000], content_digest=content_digest, prev_hash=prev, hash="",
    )
    rec.hash = record_hash(prev, rec)
    s.add(rec)
    s.flush()
    return rec


@dataclass(frozen=True)
class Broken:
    seq: int
    problem: str


def iter_records(s: Session, batch: int = 1000) -> Iterator[AuditRecord]:
    after = 0
    while True:
        rows = s.exec(select(AuditRecord).where(AuditRecord.seq > after).order_by(AuditRecord.seq).limit(batch)).all()  # type: ignore[operator,arg-type]
        if not rows:
            return
        yield from rows
        after = rows[-1].seq  # type: ignore[assignment]


def verify(s: Session) -> tuple[int, Broken | None]:
    """(records checked, first broken link or None)."""
    prev, expected_seq, n = GENESIS, 1, 0
    for r in iter_records(s):
        n += 1
        if r.seq != expected_seq:
            return n, Broken(expected_seq, f"record {expected_seq} is missing (next is {r.seq})")
        if r.prev_hash != prev:
            return n, Broken(r.seq, "its prev_hash does not match the previous record's hash")  # type: ignore[arg-type]
        if record_hash(prev, r) != r.hash:
            return n, Broken(r.seq, "its contents do not match its hash (edited after it was written)")  # type: ignore[arg-type]
        prev, expected_seq = r.hash, expected_seq + 1
    return n, None


def as_json(r: AuditRecord) -> str:
    return json.dumps(
        {
            "seq": r.seq, "at": _iso(r.at) + "Z", "actor": r.actor, "action": r.action, "target": r.target,
            "decision": r.decision, "rule": r.rule, "detail": r.detail, "content_digest": r.content_digest,
            "prev_hash": r.prev_hash, "hash": r.hash,
        },
        ensure_ascii=False,
    )
