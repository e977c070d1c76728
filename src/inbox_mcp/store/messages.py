"""Writing messages into an inbox: the thread they join, their labels, their search index.

Thread counters (message_count, unread_count, per-label counts) are maintained here on every
write so that listing threads never has to aggregate over messages: list_threads stays as fast
at 100k messages as at 10k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy import text as sql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from .blobs import put_blob
from .ids import new_id
from .tables import Attachment, Message, MessageLabel, Thread, ThreadLabel, utcnow

SUBJECT_FALLBACK_WINDOW = timedelta(days=30)
SNIPPET_CHARS = 160


@dataclass
class NewAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass
class NewMessage:
    inbox_id: str
    raw: bytes
    direction: str  # in | out
    labels: list[str]
    message_id_header: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    subject_key: str  # normalised subject, for the no-references fallback
    is_reply_subject: bool  # subject carried Re:/Fwd: — only then may the fallback thread it
    from_addr: str | None
    from_name: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None
    attachments: list[NewAttachment] = field(default_factory=list)
    parse_ok: bool = True
    auto_submitted: bool = False
    auth_results: dict[str, str] = field(default_factory=dict)
    status: str | None = None


def snippet_of(text: str) -> str:
    return " ".join(text.split())[:SNIPPET_CHARS]


def _find_thread(session: Session, m: NewMessage) -> Thread | None:
    """JWZ-style: a parent named by In-Reply-To/References wins, then a child that names us
    (replies can arrive before the message they answer), then the subject fallback."""
    refs = [r for r in ([m.in_reply_to] if m.in_reply_to else []) + list(reversed(m.references)) if r]
    # Another copy of the same message (our own sent copy of mail to ourselves) shares its thread.
    own = [m.message_id_header] if m.message_id_header else []
    if refs or own:
        row = session.exec(
            select(Message.thread_pk)
            .where(Message.inbox_id == m.inbox_id, Message.message_id_header.in_(refs + own))  # type: ignore[union-attr]
            .order_by(Message.pk.desc())  # type: ignore[union-attr]
            .limit(1)
        ).first()
        if row is not None:
            return session.get(Thread, row)
    if m.message_id_header:
        row = session.exec(
            select(Message.thread_pk)
            .where(Message.inbox_id == m.inbox_id, Message.in_reply_to == m.message_id_header)
            .limit(1)
        ).first()
        if row is not None:
            return session.get(Thread, row)
    if not refs and m.is_reply_subject and m.subject_key:
        since = utcnow() - SUBJECT_FALLBACK_WINDOW
        return session.exec(
            select(Thread)
            .where(Thread.inbox_id == m.inbox_id, Thread.subject_key == m.subject_key, Thread.last_message_at >= since)
            .order_by(Thread.last_message_at.desc())  # type: ignore[attr-defined]
            .limit(1)
        ).first()
    return None


def _participants(thread: Thread, m: NewMessage) -> str:
    people = [m.from_addr] if m.from_addr else []
    people += [p for p in json.loads(thread.participants) if p not in people]
    people += [p for p in m.to + m.cc if p not in people]
    return json.dumps(people[:20])


def insert_message(session: Session, m: NewMessage) -> Message:
    raw_sha = put_blob(session, m.raw)
    now = utcnow()
    thread = _find_thread(session, m)
    if thread is None:
        thread = Thread(id=new_id("thr"), inbox_id=m.inbox_id, subject=m.subject, subject_key=m.subject_key)
        session.add(thread)
        session.flush()
    msg = Message(
        id=new_id("msg"),
        inbox_id=m.inbox_id,
        thread_pk=thread.pk,  # type: ignore[arg-type]
        direction=m.direction,
        message_id_header=m.message_id_header,
        in_reply_to=m.in_reply_to,
        references=" ".join(m.references),
        subject=m.subject,
        from_addr=m.from_addr,
        from_name=m.from_name,
        to_addrs=json.dumps(m.to),
        cc_addrs=json.dumps(m.cc),
        bcc_addrs=json.dumps(m.bcc),
        reply_to=json.dumps(m.reply_to),
        date=m.date,
        received_at=now,
        text=m.text,
        html=m.html,
        snippet=snippet_of(m.text),
        size=len(m.raw),
        raw_sha256=raw_sha,
        parse_ok=m.parse_ok,
        auto_submitted=m.auto_submitted,
        has_attachments=bool(m.attachments),
        auth_results=json.dumps(m.auth_results),
        status=m.status,
    )
    session.add(msg)
    session.flush()
    for pos, a in enumerate(m.attachments):
        session.add(
            Attachment(
                id=new_id("att"),
                message_pk=msg.pk,  # type: ignore[arg-type]
                position=pos,
                filename=a.filename,
                content_type=a.content_type,
                size=len(a.data),
                sha256=put_blob(session, a.data),
                content_id=a.content_id,
                inline=a.inline,
            )
        )
    thread.message_count += 1
    thread.last_message_at = now
    thread.snippet = msg.snippet
    thread.participants = _participants(thread, m)
    session.add(thread)
    add_labels(session, msg, thread, m.labels, fresh=True)
    _index(session, msg, [a.filename for a in m.attachments])
    return msg


def _index(session: Session, msg: Message, filenames: list[str]) -> None:
    if session.get_bind().dialect.name != "sqlite":
        return
    addresses = " ".join(
        filter(None, [msg.from_addr, msg.from_name, *json.loads(msg.to_addrs), *json.loads(msg.cc_addrs)])
    )
    session.execute(
        sql("INSERT INTO message_fts(rowid, subject, body, addresses, filenames) VALUES (:r, :s, :b, :a, :f)"),
        {"r": msg.pk, "s": msg.subject, "b": msg.text, "a": addresses, "f": " ".join(filenames)},
    )


def labels_of(session: Session, message_pk: int) -> list[str]:
    return sorted(session.exec(select(MessageLabel.label).where(MessageLabel.message_pk == message_pk)).all())


def add_labels(session: Session, msg: Message, thread: Thread, labels: list[str], fresh: bool = False) -> None:
    """fresh: msg was just inserted, so it has no labels yet (saves a SELECT)."""
    have = set() if fresh else set(labels_of(session, msg.pk))  # type: ignore[arg-type]
    new = [label for label in dict.fromkeys(labels) if label not in have]
    if not new:
        return
    session.flush()  # msg and thread rows exist before the Core statements below
    session.execute(insert(MessageLabel), [{"message_pk": msg.pk, "label": label} for label in new])
    if session.get_bind().dialect.name == "sqlite":
        # One upsert per label instead of session.get + add + flush per label.
        upsert = sqlite_insert(ThreadLabel).on_conflict_do_update(
            index_elements=["thread_pk", "label"], set_={"count": ThreadLabel.count + 1}
        )
        session.execute(upsert, [{"thread_pk": thread.pk, "label": label, "count": 1} for label in new])
        for label in new:  # keep a ThreadLabel already loaded in this session coherent
            tl = session.identity_map.get(session.identity_key(ThreadLabel, (thread.pk, label)))  # type: ignore[arg-type]
            if tl is not None:
                session.expire(tl)
    else:
        for label in new:
            _bump_thread_label(session, thread, label, +1)
    if "unread" in new:
        thread.unread_count += 1
        session.add(thread)
    session.flush()


def remove_labels(session: Session, msg: Message, thread: Thread, labels: list[str]) -> None:
    for label in dict.fromkeys(labels):
        row = session.get(MessageLabel, (msg.pk, label))
        if row is None:
            continue
        session.delete(row)
        _bump_thread_label(session, thread, label, -1)
        if label == "unread":
            thread.unread_count -= 1
            session.add(thread)
    session.flush()


def _bump_thread_label(session: Session, thread: Thread, label: str, delta: int) -> None:
    tl = session.get(ThreadLabel, (thread.pk, label))
    if tl is None:
        tl = ThreadLabel(thread_pk=thread.pk, label=label, count=0)  # type: ignore[arg-type]
    tl.count += delta
    if tl.count <= 0:
        if tl in session:
            session.delete(tl)
    else:
        session.add(tl)


def thread_labels(session: Session, thread_pk: int) -> list[str]:
    return sorted(session.exec(select(ThreadLabel.label).where(ThreadLabel.thread_pk == thread_pk)).all())
